//! Admission control: bounded work in flight, and an immediate refusal past
//! it ([`Overloaded`], a 503 over HTTP). Nothing queues without bound: a
//! request either gets its permits now or is told to come back. The server
//! has three: bytes of request bodies (reserved before a body is read, so
//! they bound the memory bodies hold), requests in flight (taken once the
//! body has arrived) and query vectors being searched.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// No permits left: the caller answers at once rather than queue.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the server is at its limit of {capacity} {what} in flight; retry shortly")]
pub struct Overloaded {
    pub capacity: usize,
    pub what: &'static str,
}

/// A bounded count of `what` (e.g. "query vectors"); a caller holds one
/// permit per unit until it drops them.
#[derive(Debug, Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
    capacity: usize,
    what: &'static str,
}

impl Admission {
    /// `capacity` is at least 1 and at most `u32::MAX` (the config checks both).
    pub fn new(capacity: usize, what: &'static str) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
            what,
        }
    }

    /// Admits `units` of work, or refuses at once.
    /// Callers never ask for more than the capacity (the config sees to it).
    pub fn try_admit(&self, units: usize) -> Result<OwnedSemaphorePermit, Overloaded> {
        let weight = u32::try_from(units).unwrap_or(u32::MAX);
        // Nothing closes the semaphore, so the only error is "no permits".
        self.permits.clone().try_acquire_many_owned(weight).map_err(|_| {
            metrics::counter!("ivflake_admission_rejected_total", "limit" => self.what).increment(1);
            Overloaded {
                capacity: self.capacity,
                what: self.what,
            }
        })
    }

    /// Units admitted right now.
    pub fn in_flight(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_error::ApiError;

    /// Checked as the client sees it: a 503 with `Retry-After` naming the limit.
    #[test]
    fn rejects_past_capacity_and_recovers() {
        let a = Admission::new(4, "query vectors");
        let p = a.try_admit(3).unwrap();
        assert_eq!(a.in_flight(), 3);
        let e = ApiError::from(a.try_admit(2).unwrap_err());
        assert_eq!(e.status.as_u16(), 503);
        assert_eq!(e.retry_after, Some(1));
        assert!(e.message.contains("4 query vectors"), "{}", e.message);
        drop(p);
        let _all = a.try_admit(4).unwrap();
        assert_eq!(a.in_flight(), 4);
    }
}
