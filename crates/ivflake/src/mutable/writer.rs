//! Writes: `upsert` and `delete` checked, then queued for group commit.
//! One task per index commits: it takes every write queued (after the
//! first, within `group_commit_window`), merges them into one record (the
//! last change of each id wins, in arrival order), encodes the upserted
//! vectors with the base's quantizer and codec, and creates the record at
//! the log's next position with a conditional create. A writer that loses
//! the position to another process applies theirs and tries the next.
//! Each call returns once its record is durable in the store and applied
//! here, so this process's searches see it.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use arrow_array::RecordBatch;
use tokio::sync::{mpsc, oneshot};

use super::record::{Record, MAX_RECORD_IDS};
use super::{encode, gate, Encoded, MutableIndex, Shared};
use crate::attributes::rows;
use crate::error::{Error, Result};

/// Most commit attempts one record makes: each failure is another writer
/// committing first, so this many means the store refuses every create.
const MAX_ATTEMPTS: usize = 10_000;

/// Writes queued beyond this wait for room: the queue's memory is bounded.
const QUEUE: usize = 1024;

/// The most bytes of vectors one write may carry, and past which group
/// commit starts a new record: one record is one PUT, held in memory.
const MAX_RECORD_VECTOR_BYTES: usize = 256 << 20;

/// A commit first reads the newest version when its view is older than
/// this. `gc` keeps every log record younger than twice it, so a record a
/// writer has not seen is never collected: were it, the writer could
/// create its position again, under a version that no longer reads it.
pub(super) const MAX_VIEW_AGE: std::time::Duration = std::time::Duration::from_secs(60);

enum Change {
    /// Encoded by the caller (with the codec named), so that writes encode
    /// in parallel while a commit is in flight.
    Upsert {
        ids: Vec<i64>,
        vectors: Vec<f32>,
        codec: String,
        encoded: Encoded,
        /// Row for row with `ids`, checked against the index's columns.
        attributes: Option<RecordBatch>,
    },
    Delete {
        ids: Vec<i64>,
    },
}

impl Change {
    fn len(&self) -> usize {
        match self {
            Change::Upsert { ids, .. } | Change::Delete { ids } => ids.len(),
        }
    }

    fn vector_bytes(&self) -> usize {
        match self {
            Change::Upsert { vectors, .. } => vectors.len() * 4,
            Change::Delete { .. } => 0,
        }
    }
}

struct Pending {
    change: Change,
    done: oneshot::Sender<Result<u64>>,
}

/// The queue into an index's commit task.
pub(super) struct GroupCommit {
    tx: mpsc::Sender<Pending>,
}

impl MutableIndex {
    /// Inserts `vectors` (row-major, `d` floats each) under `ids`, replacing
    /// the vector of any id already present. Returns the log position it
    /// was committed at, once it is durable in the store.
    pub async fn upsert(&self, vectors: &[f32], ids: &[i64]) -> Result<u64> {
        self.upsert_with(vectors, ids, None).await
    }

    /// `upsert` with each id's attributes (row `i` is `ids[i]`'s): they
    /// replace the id's old ones, and an upsert without them leaves the id
    /// none. A column keeps the type it was first written with.
    pub async fn upsert_with(&self, vectors: &[f32], ids: &[i64], attributes: Option<&RecordBatch>) -> Result<u64> {
        let d = self.version().d;
        self.check_ids(ids)?;
        if vectors.len() != ids.len() * d {
            return Err(Error::invalid(
                "vectors",
                format!("{} floats for {} ids of d = {d}", vectors.len(), ids.len()),
            ));
        }
        if vectors.len() * 4 > MAX_RECORD_VECTOR_BYTES {
            return Err(Error::invalid(
                "vectors",
                format!(
                    "{} bytes of vectors in one write, over the {MAX_RECORD_VECTOR_BYTES} a log record holds; \
                     write in smaller batches",
                    vectors.len() * 4
                ),
            ));
        }
        if let Some(at) = vectors.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "vectors",
                format!("vector {} has a non-finite value at dimension {}", at / d, at % d),
            ));
        }
        let current = self.shared.current.load_full();
        let attributes = attributes
            .map(|batch| rows::check_write(batch, ids.len(), &current.delta.schema))
            .transpose()?;
        let vectors = vectors.to_vec();
        let encoded = encode(&self.shared.options, &current.base, vectors.clone()).await?;
        self.queue(Change::Upsert {
            ids: ids.to_vec(),
            vectors,
            codec: current.version.codec.clone(),
            encoded,
            attributes,
        })
        .await
    }

    /// Deletes `ids` (absent ones are ignored). Returns the log position.
    pub async fn delete(&self, ids: &[i64]) -> Result<u64> {
        self.check_ids(ids)?;
        self.queue(Change::Delete { ids: ids.to_vec() }).await
    }

    fn check_ids(&self, ids: &[i64]) -> Result<()> {
        let max = self.shared.options.max_batch;
        if ids.is_empty() || ids.len() > max {
            return Err(Error::invalid(
                "ids",
                format!("a write takes 1 to {max} ids, got {}", ids.len()),
            ));
        }
        if let Some(id) = ids.iter().find(|&&id| id < 0) {
            return Err(Error::invalid(
                "ids",
                format!("ids must not be negative (-1 marks an empty result), got {id}"),
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        if let Some(id) = ids.iter().find(|&&id| !seen.insert(id)) {
            return Err(Error::invalid("ids", format!("id {id} appears twice in one write")));
        }
        Ok(())
    }

    async fn queue(&self, change: Change) -> Result<u64> {
        let writer = self
            .shared
            .writer
            .get_or_try_init(|| async {
                // Refused here, before any write, on a store that would let
                // writers overwrite each other.
                self.shared.log.check_store().await?;
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(commit_loop(Arc::downgrade(&self.shared), rx));
                Ok::<_, Error>(GroupCommit { tx })
            })
            .await?;
        let (done, acked) = oneshot::channel();
        writer
            .tx
            .send(Pending { change, done })
            .await
            .map_err(|_| Error::Internal("the commit task has stopped".into()))?;
        acked
            .await
            .map_err(|_| Error::Internal("the commit task stopped before acknowledging".into()))?
    }
}

async fn commit_loop(shared: Weak<Shared>, mut rx: mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let Some(shared) = shared.upgrade() else { return };
        let window = shared.options.group_commit_window;
        if !window.is_zero() {
            tokio::time::sleep(window).await;
        }
        let mut batch = vec![first];
        let mut ids = batch[0].change.len();
        let mut bytes = batch[0].change.vector_bytes();
        // More writes join while the record stays within its bounds; one
        // that would not fit waits for the next record.
        let mut held = None;
        while (ids as u64) < MAX_RECORD_IDS / 2 && bytes < MAX_RECORD_VECTOR_BYTES {
            match rx.try_recv() {
                Ok(p) if bytes + p.change.vector_bytes() > MAX_RECORD_VECTOR_BYTES => {
                    held = Some(p);
                    break;
                }
                Ok(p) => {
                    ids += p.change.len();
                    bytes += p.change.vector_bytes();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let index = MutableIndex { shared };
        let (changes, waiters): (Vec<Change>, Vec<_>) = batch.into_iter().map(|p| (p.change, p.done)).unzip();
        let outcome = index.commit(changes).await;
        for waiter in waiters {
            let _ = waiter.send(outcome.clone());
        }
        if let Some(p) = held {
            let outcome = index.commit(vec![p.change]).await;
            let _ = p.done.send(outcome);
        }
    }
}

impl MutableIndex {
    /// Commits `changes` as one record at the log's next free position.
    async fn commit(&self, changes: Vec<Change>) -> Result<u64> {
        let mut state = self.shared.state.lock().await;
        if self.since_refresh() >= MAX_VIEW_AGE {
            self.refresh_locked(&mut state).await?;
        }
        let d = state.version.d;
        // The last change of each id, in arrival order.
        let mut last: HashMap<i64, Option<(usize, usize)>> = HashMap::new();
        for (c, change) in changes.iter().enumerate() {
            match change {
                Change::Upsert { ids, .. } => {
                    last.extend(ids.iter().enumerate().map(|(i, &id)| (id, Some((c, i)))));
                }
                Change::Delete { ids } => last.extend(ids.iter().map(|&id| (id, None))),
            }
        }
        let mut record = Record {
            codec: state.version.codec.clone(),
            d,
            code_size: super::code_size(state.base.info()),
            ..Default::default()
        };
        let mut ordered: Vec<(i64, Option<(usize, usize)>)> = last.into_iter().collect();
        ordered.sort_unstable_by_key(|(id, _)| *id);
        let cs = record.code_size;
        let mut stale = false;
        let mut rows_from = Vec::with_capacity(ordered.len());
        for (id, at) in ordered {
            match at {
                Some((c, i)) => {
                    let Change::Upsert {
                        vectors,
                        codec,
                        encoded,
                        ..
                    } = &changes[c]
                    else {
                        unreachable!("an upsert's position names an upsert")
                    };
                    record.ids.push(id);
                    rows_from.push((c, i));
                    record.vectors.extend_from_slice(&vectors[i * d..(i + 1) * d]);
                    record.lists.push(encoded.lists[i]);
                    record.codes.extend_from_slice(&encoded.codes[i * cs..(i + 1) * cs]);
                    stale |= *codec != record.codec;
                }
                None => record.deletes.push(id),
            }
        }
        record.attributes = record_attributes(&changes, &rows_from)?;
        if stale {
            // A compaction retrained the codec since these were encoded.
            let encoded = encode(&self.shared.options, &state.base, record.vectors.clone()).await?;
            record.lists = encoded.lists;
            record.codes = encoded.codes;
        }
        let bytes = record.encode()?;
        for _ in 0..MAX_ATTEMPTS {
            let position = state.builder.next_position();
            gate::reach("write:encoded");
            if self.shared.log.create_at(position, bytes.clone()).await? {
                gate::reach("write:committed");
                self.apply(&mut state, record).await?;
                self.publish(&state);
                return Ok(position);
            }
            // Another writer holds it: theirs comes first, ours next. A
            // record gone already was folded into a newer version and
            // collected: move to that version, then try again.
            let shape = (d, record.code_size);
            match self.read_record(shape, position).await {
                Ok(theirs) => self.apply(&mut state, theirs).await?,
                Err(e @ Error::NotFound { .. }) => {
                    self.refresh_locked(&mut state).await?;
                    if state.builder.next_position() <= position {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Unsupported {
            uri: self.uri().to_string(),
            reason: format!("{MAX_ATTEMPTS} log positions in a row were taken while committing"),
        })
    }
}

/// The record's attribute batch: row `i` from `rows_from[i]` = (change,
/// row); `None` when no change carried attributes.
fn record_attributes(changes: &[Change], rows_from: &[(usize, usize)]) -> Result<Option<RecordBatch>> {
    let sources: Vec<Option<&RecordBatch>> = changes
        .iter()
        .map(|c| match c {
            Change::Upsert { attributes, .. } => attributes.as_ref(),
            Change::Delete { .. } => None,
        })
        .collect();
    let mut schema = Arc::new(arrow_schema::Schema::empty());
    for batch in sources.iter().flatten() {
        let (merged, conflicts) = rows::merge_schemas(&schema, &batch.schema());
        if !conflicts.is_empty() {
            return Err(Error::invalid(
                "attributes",
                format!("writes committed together give columns {conflicts:?} different types"),
            ));
        }
        schema = merged;
    }
    if schema.fields().is_empty() {
        return Ok(None);
    }
    rows::gather(&schema, &sources, rows_from).map(Some)
}
