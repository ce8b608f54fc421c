//! The bench's set-up: sizes checked, data built into an index, the index put
//! in its store behind the injected delay, and opened.

use super::*;

pub(super) fn check_sizes(args: &BenchArgs) -> Result<()> {
    for (what, count) in [("--n", args.n), ("--queries", args.queries), ("--batch", args.batch)] {
        if count.checked_mul(args.d).is_none_or(|f| f > MAX_FLOATS) {
            bail!(
                "{what} × d = {count} × {} is more than the bench's limit of {MAX_FLOATS} floats",
                args.d
            );
        }
    }
    if args.k > ivflake::MAX_K {
        bail!("-k {} is more than a search allows ({})", args.k, ivflake::MAX_K);
    }
    if args.batch.saturating_mul(args.k) > ivflake::MAX_RESULT_SLOTS {
        bail!(
            "--batch {} × k {} is more than the {} result slots one search allows",
            args.batch,
            args.k,
            ivflake::MAX_RESULT_SLOTS
        );
    }
    if args.k > args.n {
        bail!("-k {} asks for more neighbours than the {} vectors", args.k, args.n);
    }
    if args.factory.is_none() && args.nlist > args.n {
        bail!(
            "--nlist {} needs at least as many vectors to train on; --n is {}",
            args.nlist,
            args.n
        );
    }
    Ok(())
}

/// The store's injected delay per GET.
#[derive(Debug, Clone, Copy)]
pub(super) struct Delay {
    pub(super) per_call: Duration,
    pub(super) per_byte: Duration,
}

impl Delay {
    pub(super) fn new(latency_ms: f64, throughput_mbps: f64) -> Result<Self> {
        if !(0.0..=MAX_LATENCY_MS).contains(&latency_ms) {
            bail!("--latency-ms must be between 0 and {MAX_LATENCY_MS}, got {latency_ms}");
        }
        if !(0.0..=MAX_THROUGHPUT_MBPS).contains(&throughput_mbps) {
            bail!("--throughput-mbps must be between 0 (unlimited) and {MAX_THROUGHPUT_MBPS}, got {throughput_mbps}");
        }
        let per_byte = if throughput_mbps == 0.0 {
            Duration::ZERO
        } else {
            // Whole nanoseconds: ThrottledStore multiplies a Duration per byte.
            Duration::from_nanos((1e3 / throughput_mbps).round() as u64)
        };
        Ok(Self {
            per_call: Duration::from_secs_f64(latency_ms / 1e3),
            per_byte,
        })
    }

    pub(super) fn is_zero(&self) -> bool {
        self.per_call.is_zero() && self.per_byte.is_zero()
    }

    pub(super) fn describe(&self) -> String {
        if self.is_zero() {
            return "no injected delay".into();
        }
        let rate = if self.per_byte.is_zero() {
            "unlimited".to_string()
        } else {
            format!("{:.0} MB/s", 1e3 / self.per_byte.as_nanos() as f64)
        };
        format!(
            "ThrottledStore: {} ms before each GET, then {rate}",
            self.per_call.as_secs_f64() * 1e3
        )
    }
}

pub(super) struct Built {
    pub(super) bytes: Bytes,
    /// The same file read back whole by Faiss: the in-memory reference.
    pub(super) reference: ivflake_faiss::Index,
    pub(super) trained_on: usize,
}

/// Trains (on the first rows, which the generator already draws in random
/// order) and fills the index, serializes it, and reads the bytes back whole.
pub(super) fn build(database: &Vectors, factory: &str) -> Result<Built> {
    let mut index = ivflake_faiss::Index::factory(database.d, factory, Metric::L2)
        .with_context(|| format!("Faiss cannot build {factory:?} for d={}", database.d))?;
    let nlist = index.info().nlist;
    if nlist == 0 {
        bail!("{factory:?} is not an IVF index; ivflake serves IVF indexes (e.g. \"IVF1024,Flat\")");
    }
    let mut trained_on = database.n.min(nlist.saturating_mul(TRAIN_PER_LIST));
    ensure!(
        trained_on >= nlist,
        "{factory:?} has {nlist} lists but only {} vectors to train them on; raise --n",
        database.n
    );
    if !index.is_trained()? {
        train_showing(
            &mut index,
            factory,
            &database.data[..trained_on * database.d],
            database.d,
        )?;
    } else {
        trained_on = 0;
    }
    add_showing(&mut index, &database.data, None, database.d)?;
    let bytes = Bytes::from(index.to_bytes().context("serializing the index failed")?);
    drop(index);
    let reference =
        ivflake_faiss::read_index(&bytes).context("cannot load the built index whole as the in-memory reference")?;
    Ok(Built {
        bytes,
        reference,
        trained_on,
    })
}

/// The store the bench searches, with the delay in front of it.
pub(super) struct Target {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) path: Path,
    pub(super) uri: String,
    pub(super) description: String,
}

/// Where the index goes, checked before the expensive build: `--uri` parsed,
/// not a local file when delays are asked for, and not already there.
pub(super) async fn destination(args: &BenchArgs, delay: &Delay) -> Result<IndexLocation> {
    let Some(uri) = &args.uri else {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        return Ok(IndexLocation::new(store, MEMORY_KEY, format!("memory:///{MEMORY_KEY}")));
    };
    let local = !uri.contains("://") || uri.starts_with("file://");
    if local && !delay.is_zero() {
        bail!(
            "{uri} is a local file, and object_store's ThrottledStore cannot delay local file reads; \
             pass --latency-ms 0 --throughput-mbps 0, or bench an s3:// URI"
        );
    }
    let location = IndexLocation::parse(uri, &FetchConfig::default()).context("invalid --uri")?;
    match location.store.head(&location.path).await {
        Ok(_) if !args.overwrite => {
            bail!("{uri} already exists; pass --overwrite to replace it with the bench's index")
        }
        Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(location),
        Err(e) => Err(e).with_context(|| format!("cannot check whether {uri} exists")),
    }
}

/// Writes the index to its destination and puts the delay in front of the store.
pub(super) async fn fill(location: IndexLocation, bytes: &Bytes, delay: &Delay, in_memory: bool) -> Result<Target> {
    if in_memory {
        location
            .store
            .put(&location.path, PutPayload::from(bytes.clone()))
            .await
            .context("cannot put the index in the in-memory store")?;
    } else {
        write_object(&location, bytes).await?;
    }
    let store: Arc<dyn ObjectStore> = if delay.is_zero() {
        location.store
    } else {
        Arc::new(ThrottledStore::new(
            location.store,
            ThrottleConfig {
                wait_get_per_call: delay.per_call,
                wait_get_per_byte: delay.per_byte,
                ..Default::default()
            },
        ))
    };
    let kind = if in_memory {
        "object_store InMemory"
    } else {
        "the store at --uri"
    };
    Ok(Target {
        store,
        path: location.path,
        uri: location.uri,
        description: format!("{kind}; {}", delay.describe()),
    })
}

/// Opens the bench's index with its own scheduler (and so its own cache).
pub(super) async fn open(target: &Target, config: FetchConfig) -> Result<IvfIndex> {
    open_with(target, config, ivflake::Preload::Off).await
}

pub(super) async fn open_with(target: &Target, config: FetchConfig, preload: ivflake::Preload) -> Result<IvfIndex> {
    let location = IndexLocation::new(target.store.clone(), target.path.clone(), target.uri.clone());
    let options = OpenOptions {
        scheduler: FetchScheduler::new(config),
        preload,
        ..Default::default()
    };
    IvfIndex::open_at(location, options)
        .await
        .with_context(|| format!("cannot open the index at {}", target.uri))
}
