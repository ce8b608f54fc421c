//! Admission control: a bounded amount of search work in flight, and an
//! immediate 503 past it. Nothing queues without bound: a request either gets
//! its permits now or is told to come back.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::error::ApiError;

/// Counts query vectors being searched; a request holds one permit per vector.
#[derive(Debug, Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
    capacity: u32,
}

impl Admission {
    pub fn new(max_queries_in_flight: usize) -> Self {
        let capacity = u32::try_from(max_queries_in_flight.max(1)).unwrap_or(u32::MAX);
        Self {
            permits: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
        }
    }

    /// Admits `queries` vectors of work, or answers 503 with `Retry-After` at once.
    pub fn try_admit(&self, queries: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let weight = u32::try_from(queries).unwrap_or(u32::MAX).clamp(1, self.capacity);
        match self.permits.clone().try_acquire_many_owned(weight) {
            Ok(permit) => Ok(permit),
            Err(TryAcquireError::NoPermits) => {
                metrics::counter!("ivflake_admission_rejected_total").increment(1);
                Err(ApiError::unavailable(
                    "overloaded",
                    format!(
                        "the server is at its limit of {} query vectors in flight; retry shortly",
                        self.capacity
                    ),
                ))
            }
            Err(TryAcquireError::Closed) => Err(ApiError::unavailable("shutting_down", "the server is shutting down")),
        }
    }

    /// Query vectors admitted right now.
    pub fn in_flight(&self) -> usize {
        self.capacity as usize - self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_past_capacity_and_recovers() {
        let a = Admission::new(4);
        let p = a.try_admit(3).unwrap();
        assert_eq!(a.in_flight(), 3);
        let e = a.try_admit(2).unwrap_err();
        assert_eq!(e.status.as_u16(), 503);
        assert_eq!(e.retry_after, Some(1));
        drop(p);
        // A batch larger than the capacity is clamped, never unadmittable.
        let _all = a.try_admit(100).unwrap();
    }
}
