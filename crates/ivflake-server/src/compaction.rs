//! The compaction worker (`ivflake compact --watch`): every writable index
//! a config serves and every S3 Vectors index under its `[vectors] root`
//! is compacted once its log passes its threshold, and collected (`gc`)
//! now and then, so search replicas (`[compaction] mode = "worker"`) never
//! spend their CPU and memory on it. Any number of workers may run: a
//! compaction commits with a conditional create, so one of two racing
//! workers loses cleanly and tries again later.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ivflake::{ComputePool, FetchScheduler, IndexLocation, MutableIndex, MutableOptions, OpenOptions};
use serde::Serialize;

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::registry::{compact_if_due, DEFAULT_COMPACT_UNINDEXED_ENTRIES};
use crate::vectors::{self, VectorApi};

/// A writable index of the config: opened at its first round that can
/// (one that will not open is reported and tried again, never fatal).
struct Writable {
    name: String,
    uri: String,
    threshold: u64,
    index: Option<MutableIndex>,
}

/// What one round did, by index (`name`, or `bucket/index`).
#[derive(Debug, Default, Serialize)]
pub struct Round {
    pub compacted: Vec<Compacted>,
    pub collected: Vec<String>,
    /// Indexes that failed to open, compact or gc; tried again next round.
    pub failed: Vec<Failed>,
}

#[derive(Debug, Serialize)]
pub struct Failed {
    pub index: String,
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct Compacted {
    pub index: String,
    pub version: u64,
    pub entries: u64,
    pub ms: f64,
}

impl Compacted {
    fn of(index: String, report: &ivflake::CompactReport) -> Self {
        Self {
            index,
            version: report.version,
            entries: report.entries,
            ms: report.ms,
        }
    }
}

impl Round {
    pub fn is_empty(&self) -> bool {
        self.compacted.is_empty() && self.collected.is_empty() && self.failed.is_empty()
    }
}

pub struct CompactionWorker {
    config: ServerConfig,
    options: MutableOptions,
    writable: Vec<Writable>,
    vectors: Option<Arc<VectorApi>>,
    last_gc: Option<Instant>,
}

impl CompactionWorker {
    /// The worker for `config`: its S3 Vectors root opened now (a root
    /// that cannot be served is an error), its writable indexes at the
    /// first round.
    pub async fn open(config: ServerConfig) -> Result<Self, ServerError> {
        config.validate()?;
        let compute = ComputePool::new(config.compute_threads).map_err(|source| ServerError::ComputePool { source })?;
        let open = OpenOptions {
            scheduler: FetchScheduler::new(config.fetch_config()),
            compute,
            ..OpenOptions::default()
        };
        let options = MutableOptions {
            open,
            ..MutableOptions::default()
        };
        let writable = config
            .indexes
            .iter()
            .filter(|(_, i)| i.writable)
            .map(|(name, index)| Writable {
                name: name.clone(),
                uri: index.uri.clone(),
                threshold: index
                    .compact_unindexed_entries
                    .unwrap_or(DEFAULT_COMPACT_UNINDEXED_ENTRIES),
                index: None,
            })
            .collect();
        let vectors = VectorApi::open_shared(&config.vectors, None, options.clone()).await?;
        Ok(Self {
            config,
            options,
            writable,
            vectors,
            last_gc: None,
        })
    }

    /// One pass over every index: each reads its log's head, compacts when
    /// due, and, every `gc_interval_secs`, drops what no version names.
    pub async fn round(&mut self) -> Round {
        let mut round = Round::default();
        let gc_due = self
            .last_gc
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(self.config.compaction.gc_interval_secs));
        let retention = Duration::from_secs(self.config.compaction.gc_retention_secs);
        for w in &mut self.writable {
            let outcome = async {
                let index = match &w.index {
                    Some(index) => index,
                    None => {
                        let location = IndexLocation::parse_prefix(&w.uri, self.options.open.scheduler.config())?;
                        w.index
                            .insert(MutableIndex::open_at(location, self.options.clone()).await?)
                    }
                };
                index.refresh().await?;
                if let Some(r) = compact_if_due(index, w.threshold).await? {
                    round.compacted.push(Compacted::of(w.name.clone(), &r));
                }
                if gc_due {
                    index.gc(retention).await?;
                    round.collected.push(w.name.clone());
                }
                Ok::<_, ivflake::Error>(())
            }
            .await;
            if let Err(e) = outcome {
                round.failed.push(Failed {
                    index: w.name.clone(),
                    error: e.to_string(),
                });
            }
        }
        if let Some(api) = &self.vectors {
            vectors_round(api, gc_due.then_some(retention), &mut round).await;
        }
        if gc_due {
            self.last_gc = Some(Instant::now());
        }
        round
    }

    /// Rounds every `interval_ms` until `rounds` have run (0: until
    /// `shutdown` resolves), each reported to `report`.
    pub async fn run(
        mut self,
        rounds: u64,
        shutdown: impl std::future::Future<Output = ()>,
        mut report: impl FnMut(&Round),
    ) {
        let mut every = tokio::time::interval(Duration::from_millis(self.config.compaction.interval_ms));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut done = 0;
        while rounds == 0 || done < rounds {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = every.tick() => {}
            }
            let round = self.round().await;
            for f in &round.failed {
                tracing::warn!(index = %f.index, error = %f.error, "compaction failed; trying again next round");
            }
            report(&round);
            done += 1;
        }
    }
}

/// The S3 Vectors indexes' part of a round: every index of every bucket.
async fn vectors_round(api: &VectorApi, gc: Option<Duration>, round: &mut Round) {
    let buckets = match api.catalog.bucket_names().await {
        Ok(b) => b,
        Err(e) => {
            return round.failed.push(Failed {
                index: "vector buckets".into(),
                error: e.to_string(),
            })
        }
    };
    for bucket in buckets {
        let names = match api.catalog.index_names(&bucket).await {
            Ok(n) => n,
            Err(e) => {
                round.failed.push(Failed {
                    index: bucket.clone(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        for name in names {
            let label = format!("{bucket}/{name}");
            let outcome = async {
                let open = api.catalog.index(&bucket, &name).await?;
                open.index.refresh().await?;
                if let Some(r) = vectors::compact_if_due(api, &open).await? {
                    round.compacted.push(Compacted::of(label.clone(), &r));
                }
                if let Some(retention) = gc {
                    open.index.gc(retention).await?;
                    round.collected.push(label.clone());
                }
                Ok::<_, vectors::S3vError>(())
            }
            .await;
            if let Err(e) = outcome {
                round.failed.push(Failed {
                    index: label,
                    error: e.to_string(),
                });
            }
        }
    }
}
