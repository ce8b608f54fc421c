//! Opening an index, in named steps: read the checksum sidecar and the
//! header's first bytes (together: one round trip), parse the header (reading more while Faiss asks),
//! build the list layout, attach the sidecar. Reads only the header, never list
//! data (except, for fast-scan block lists without a sidecar, one streamed pass
//! that keeps only the lists' inline counts), and gives every read the
//! scheduler's per-GET time limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use ivflake_faiss::HeaderProbe;
use object_store::{GetOptions, ObjectMeta, ObjectStoreExt};

use super::entries::EntryRegion;
use super::options::{ManifestMode, OpenOptions, MAX_OPEN_REQUESTS};
use super::rerank::IdMap;
use super::{IndexMemory, Inner, IvfIndex, OpenStats};
use crate::error::{Error, Result};
use crate::fetch::VersionPin;
use crate::layout::{BlockListWalker, ListFormat, ListRanges};
use crate::location::IndexLocation;
use crate::manifest::Manifest;
use crate::object::IndexObject;
use crate::probes::ProbeCounts;

/// The most header bytes a sidecar may make open read at once: far above any
/// real quantizer (a million 1024-d float centroids is 4 GiB; such indexes
/// take the bounded extra reads instead).
const MAX_SIDECAR_HEADER: u64 = 256 << 20;
/// Bytes read past what Faiss asked for when a header outgrows the first
/// read: an IVF4096 × 128-d header (2.2 MiB) then opens in two reads, not three.
const HEADER_TAIL_SLACK: u64 = 256 << 10;
/// Bytes read at once past an index's lists: a refine index's head (an SQ's
/// trained ranges included) or an id map's count, in one read.
const SEGMENT_READ: u64 = 64 << 10;

/// The reads of one open: each bounded by the per-GET time limit, so a
/// stalled store fails an open with `DeadlineExceeded` instead of hanging it.
struct HeaderReads<'a> {
    location: &'a IndexLocation,
    limit: Duration,
    /// GETs sent, and bytes of the index file received, for [`OpenStats`].
    gets: AtomicU64,
    bytes: AtomicU64,
}

impl HeaderReads<'_> {
    async fn timed<T>(&self, stage: &'static str, read: impl std::future::Future<Output = T>) -> Result<T> {
        tokio::time::timeout(self.limit, read)
            .await
            .map_err(|_| Error::DeadlineExceeded {
                deadline: self.limit,
                stage,
            })
    }

    fn uri(&self) -> &str {
        &self.location.uri
    }

    fn count(&self, bytes: usize) {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The sidecar as `mode` asks: `None` when it is ignored or missing
    /// (Auto); an error when it cannot be read, which the caller forgives
    /// under Auto once the header has been read (so a store that fails both
    /// reports the header's error, not a sidecar warning first).
    async fn sidecar(&self, mode: ManifestMode) -> Result<Option<Manifest>> {
        let read = || {
            self.count(0);
            self.timed("reading the checksum sidecar", Manifest::read_at(self.location))
        };
        match mode {
            ManifestMode::Ignore => Ok(None),
            ManifestMode::Auto => read().await.and_then(|r| r),
            ManifestMode::Require => read().await??.map(Some).ok_or_else(|| Error::SidecarMissing {
                uri: self.uri().to_string(),
                sidecar: Manifest::sidecar_uri(self.uri()),
            }),
        }
    }

    /// The file's first `probe` bytes and the version they belong to.
    async fn first_bytes(&self, probe: u64) -> Result<(Bytes, ObjectMeta)> {
        let location = self.location;
        let first = self
            .timed(
                "reading the index header",
                location
                    .store
                    .get_opts(&location.path, GetOptions::new().with_range(Some(0..probe))),
            )
            .await?;
        let first = match first {
            Ok(first) => first,
            // A range read of an empty object fails; say what is wrong with it.
            Err(e @ object_store::Error::Generic { .. }) => {
                return match location.store.head(&location.path).await {
                    Ok(meta) if meta.size == 0 => Err(Error::Corrupt {
                        uri: self.uri().to_string(),
                        reason: "the file is empty".into(),
                    }),
                    _ => Err(Error::from_store(self.uri(), None, e)),
                }
            }
            Err(e) => return Err(Error::from_store(self.uri(), None, e)),
        };
        let meta = first.meta.clone();
        let bytes = self
            .timed("reading the index header", first.bytes())
            .await?
            .map_err(|e| Error::from_store(self.uri(), None, e))?;
        self.count(bytes.len());
        Ok((bytes, meta))
    }

    /// Bytes `have..want` of the version `e_tag` names.
    async fn more_bytes(&self, have: u64, want: u64, e_tag: Option<&str>) -> Result<Bytes> {
        let location = self.location;
        let read = async {
            location
                .store
                .get_opts(
                    &location.path,
                    GetOptions::new()
                        .with_range(Some(have..want))
                        .with_if_match(e_tag.map(str::to_string)),
                )
                .await?
                .bytes()
                .await
        };
        let more = self
            .timed("reading the index header", read)
            .await?
            .map_err(|e| Error::from_store(self.uri(), e_tag, e))?;
        self.count(more.len());
        if more.len() as u64 != want - have {
            return Err(Error::Corrupt {
                uri: self.uri().to_string(),
                reason: "store returned a short header read".into(),
            });
        }
        Ok(more)
    }

    /// The counts of block-format lists, found in one streamed read of the
    /// list data that keeps only positions (`BlockListWalker`); each wait
    /// for the next chunk is bounded by the per-GET time limit.
    async fn block_counts(
        &self,
        format: ListFormat,
        nlist: usize,
        data_offset: u64,
        meta: &ObjectMeta,
    ) -> Result<Vec<u64>> {
        let location = self.location;
        let e_tag = meta.e_tag.as_deref();
        let mut walker = BlockListWalker::new(format, nlist, data_offset, meta.size);
        let corrupt = |reason: String| Error::Corrupt {
            uri: self.uri().to_string(),
            reason: format!("block inverted lists: {reason}"),
        };
        if data_offset < meta.size {
            let stage = "reading block list sizes";
            let get = location.store.get_opts(
                &location.path,
                GetOptions::new()
                    .with_range(Some(data_offset..meta.size))
                    .with_if_match(meta.e_tag.clone()),
            );
            let mut stream = self
                .timed(stage, get)
                .await?
                .map_err(|e| Error::from_store(self.uri(), e_tag, e))?
                .into_stream();
            self.count(0);
            while let Some(chunk) = self.timed(stage, stream.next()).await? {
                let chunk = chunk.map_err(|e| Error::from_store(self.uri(), e_tag, e))?;
                self.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                walker.feed(&chunk).map_err(corrupt)?;
            }
        }
        walker.finish().map_err(corrupt)
    }
}

impl IvfIndex {
    /// Opens the index at `location`: reads the header only, never list data.
    pub async fn open_at(location: IndexLocation, options: OpenOptions) -> Result<Self> {
        let started = Instant::now();
        let uri = location.uri.clone();
        options.preload.validate()?;
        let reads = HeaderReads {
            location: &location,
            limit: options.scheduler.config().get_timeout,
            gets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        };
        let mode = options.manifest;
        // One round trip: the sidecar and the header's first bytes are asked
        // for together, so open waits for the slower of two GETs, not both.
        let probe = options.header_probe_bytes.max(64);
        let (manifest, first) = tokio::join!(reads.sidecar(mode), reads.first_bytes(probe));
        let (mut first, meta) = first?;
        let mut manifest = match manifest {
            Ok(manifest) => manifest,
            Err(e) if mode == ManifestMode::Auto => {
                tracing::warn!(uri = %uri, error = %e, "ignoring the checksum sidecar; lists are not verified");
                None
            }
            Err(e) => return Err(e),
        };
        // A sidecar whose header is longer than the probe says how much is
        // missing: one more read of exactly that (bounded, so a stale sidecar
        // cannot make it larger than a header can be).
        if let Some(m) = &manifest {
            let want = m.header_len.min(MAX_SIDECAR_HEADER).min(meta.size);
            let have = first.len() as u64;
            if want > have {
                let more = reads.more_bytes(have, want, meta.e_tag.as_deref()).await?;
                first = [first, more].concat().into();
            }
        }
        check_magic(&first, &uri)?;
        // Check the header against the sidecar before Faiss parses a byte of it.
        if let Some(m) = &manifest {
            if let Err(e) = m.verify_header(&first, &uri) {
                if mode == ManifestMode::Require {
                    return Err(e);
                }
                tracing::warn!(uri = %uri, error = %e, "lists are not verified");
                manifest = None;
            }
        }
        let (faiss, prefix) = parse_header(&reads, &options, first, &meta).await?;
        let (faiss, residual_table_build) = build_residual_table(&options, faiss).await?;

        let info = faiss.info().clone();
        let last_modified = meta.last_modified.timestamp_nanos_opt().unwrap_or(0);
        let (layout, data_object) = match &info.on_disk {
            None => (list_ranges(&reads, &faiss, manifest.as_ref(), &meta).await?, None),
            Some(on_disk) => {
                let (layout, data) = on_disk_lists(&reads, &faiss, on_disk, &meta, mode).await?;
                (layout, Some(Arc::new(data)))
            }
        };
        let mut object =
            IndexObject::new(location.clone(), meta.size, meta.e_tag.clone()).with_last_modified(last_modified);
        // An on-disk index's file is all header; its sidecar lists no lists.
        let header_only;
        let described = if layout.is_on_disk() {
            header_only = ListRanges::header_only(meta.size);
            &header_only
        } else {
            &layout
        };
        if let Some(manifest) = manifest {
            match manifest.check_against(described, meta.size, &prefix, &uri) {
                Ok(()) => object = object.with_verifier(Arc::new(manifest)),
                Err(e) if mode == ManifestMode::Require => return Err(e),
                Err(e) => tracing::warn!(uri = %uri, error = %e, "lists are not verified"),
            }
        }
        drop(prefix);
        let object = Arc::new(object);
        let lists_object = data_object.unwrap_or_else(|| object.clone());
        let refine = info.refine.map(|r| {
            EntryRegion::new(
                &options.scheduler,
                &object,
                "refine",
                r.codes_offset,
                r.code_size as u64,
                info.ntotal.max(0) as u64,
            )
        });
        let id_map = match info.id_map {
            Some(m) => Some(id_map(&reads, &options, &object, &meta, m.offset, info.ntotal.max(0) as u64).await?),
            None => None,
        };
        let open = OpenStats {
            gets: reads.gets.load(Ordering::Relaxed),
            bytes: reads.bytes.load(Ordering::Relaxed),
            ms: started.elapsed().as_secs_f64() * 1e3,
        };
        tracing::debug!(uri = %uri, gets = open.gets, bytes = open.bytes, ms = open.ms, "opened index");
        let probes = {
            let (dir, uri, nlist) = (options.state_dir.clone(), uri.clone(), info.nlist);
            tokio::task::spawn_blocking(move || ProbeCounts::load(dir.as_deref(), &uri, nlist))
                .await
                .unwrap_or_else(|_| ProbeCounts::load(None, "", info.nlist))
        };
        let pin = options.scheduler.pin_lists(&lists_object, info.nlist);
        let metrics_name = options.metrics_name.clone().unwrap_or_else(|| uri.clone());
        let mut memory = index_memory(&faiss, &layout, &pin, residual_table_build)?;
        memory.id_map_bytes = id_map.as_ref().map_or(0, IdMap::resident_bytes);
        let index = Self {
            inner: Arc::new(Inner {
                faiss,
                info,
                ranges: layout,
                object,
                lists_object,
                refine,
                id_map,
                options,
                probes: Arc::new(probes),
                memory,
                open,
                attributes: tokio::sync::OnceCell::new(),
                preload: std::sync::OnceLock::new(),
                pin,
                metrics_name: metrics_name.into(),
            }),
        };
        index.register_metrics();
        index.start_preload();
        Ok(index)
    }
}

/// An on-disk index's lists: its data object beside it (named as the header
/// records it), whose length must be the header's, and each list's place in
/// it, checked (`ListRanges::on_disk`). The data object is pinned like the
/// index: every list GET carries its ETag. Its own checksum sidecar
/// (`<data>.ivfmanifest`), read at the same time as its HEAD, verifies every
/// list fetched from it, as `mode` asks.
async fn on_disk_lists(
    reads: &HeaderReads<'_>,
    faiss: &ivflake_faiss::Index,
    on_disk: &ivflake_faiss::OnDiskInfo,
    meta: &ObjectMeta,
    mode: ManifestMode,
) -> Result<(ListRanges, IndexObject)> {
    let data = reads.location.sibling(&on_disk.filename)?;
    let data_reads = HeaderReads {
        location: &data,
        limit: reads.limit,
        gets: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    };
    let (head, sidecar) = tokio::join!(
        reads.timed("reading the on-disk lists' data file", data.store.head(&data.path)),
        data_reads.sidecar(mode)
    );
    let head = head?.map_err(|e| Error::from_store(&data.uri, None, e))?;
    reads.count(0);
    reads
        .gets
        .fetch_add(data_reads.gets.load(Ordering::Relaxed), Ordering::Relaxed);
    let sidecar = match sidecar {
        Ok(sidecar) => sidecar,
        Err(e) if mode == ManifestMode::Auto => {
            tracing::warn!(uri = %data.uri, error = %e, "ignoring the data file's checksum sidecar");
            None
        }
        Err(e) => return Err(e),
    };
    if head.size != on_disk.data_len {
        return Err(Error::Corrupt {
            uri: data.uri.clone(),
            reason: format!(
                "the on-disk lists' data file has {} bytes where the index {} says {}",
                head.size,
                reads.uri(),
                on_disk.data_len
            ),
        });
    }
    let layout = ListRanges::on_disk(
        faiss.info().code_size,
        &faiss.on_disk_lists()?,
        meta.size,
        head.size,
        &data.uri,
    )?;
    let nanos = head.last_modified.timestamp_nanos_opt().unwrap_or(0);
    let mut object = IndexObject::new(data.clone(), head.size, head.e_tag).with_last_modified(nanos);
    if let Some(sidecar) = sidecar {
        match sidecar.check_against(&layout.lists_only(), head.size, &[], &data.uri) {
            Ok(()) => object = object.with_verifier(Arc::new(sidecar)),
            Err(e) if mode == ManifestMode::Require => return Err(e),
            Err(e) => tracing::warn!(uri = %data.uri, error = %e, "lists are not verified"),
        }
    }
    Ok((layout, object))
}

/// An id map: its user ids read at open (one GET) when they fit
/// `id_map_memory_bytes`, else pages read for each search's results.
async fn id_map(
    reads: &HeaderReads<'_>,
    options: &OpenOptions,
    object: &IndexObject,
    meta: &ObjectMeta,
    offset: u64,
    ntotal: u64,
) -> Result<IdMap> {
    let bytes = ntotal.saturating_mul(8);
    if bytes > options.id_map_memory_bytes {
        return Ok(IdMap::Paged(EntryRegion::new(
            &options.scheduler,
            object,
            "id-map",
            offset,
            8,
            ntotal,
        )));
    }
    let raw = if bytes == 0 {
        Bytes::new()
    } else {
        reads.more_bytes(offset, offset + bytes, meta.e_tag.as_deref()).await?
    };
    Ok(IdMap::Resident(
        raw.chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect(),
    ))
}

/// Builds IVF-PQ's residual table on the compute pool when `options` allow
/// its size; returns how long that took.
async fn build_residual_table(
    options: &OpenOptions,
    mut faiss: ivflake_faiss::Index,
) -> Result<(ivflake_faiss::Index, Duration)> {
    if faiss.residual_table_size()? == 0 {
        return Ok((faiss, Duration::ZERO));
    }
    let max_bytes = options.residual_table.max_bytes();
    let started = Instant::now();
    let faiss = options
        .compute
        .run(move || {
            faiss.build_residual_table(max_bytes)?;
            Ok(faiss)
        })
        .await?;
    Ok((faiss, started.elapsed()))
}

fn index_memory(
    faiss: &ivflake_faiss::Index,
    layout: &ListRanges,
    pin: &VersionPin,
    table_build: Duration,
) -> Result<IndexMemory> {
    let parts = faiss.memory()?;
    Ok(IndexMemory {
        quantizer_bytes: parts.quantizer,
        codec_bytes: parts.codec,
        transform_bytes: parts.transforms,
        residual_table_bytes: parts.residual_table,
        residual_table_size: faiss.residual_table_size()?,
        residual_table_build_us: table_build.as_micros() as u64,
        layout_bytes: parts.list_sizes + layout.resident_bytes() + pin.resident_table_bytes(),
        id_map_bytes: 0,
    })
}

/// Where every list is. Array lists: from the header's sizes. Block lists
/// (fast-scan): their counts are inline, so from the sidecar's list extents
/// when it has them, else from one streamed pass over the list data.
async fn list_ranges(
    reads: &HeaderReads<'_>,
    faiss: &ivflake_faiss::Index,
    manifest: Option<&Manifest>,
    meta: &ObjectMeta,
) -> Result<ListRanges> {
    let info = faiss.info();
    let uri = reads.uri();
    let data_offset = info.list_data_offset;
    let format = match info.list_format {
        ListFormat::Array { .. } => {
            let end = info.list_data_end.unwrap_or(meta.size);
            return ListRanges::with_format(info.list_format, &faiss.list_sizes()?, data_offset, end, uri);
        }
        blocks @ ListFormat::Blocks { .. } => blocks,
        other => {
            return Err(Error::Unsupported {
                uri: uri.to_string(),
                reason: format!("a list format this version of ivflake does not know: {other:?}"),
            })
        }
    };
    if let Some(m) = manifest.filter(|m| m.header_len == data_offset && m.lists.len() == info.nlist) {
        let extents: Vec<(u64, u64)> = m.lists.iter().map(|l| (l.offset, l.len)).collect();
        match ListRanges::blocks_from_extents(format, &extents, data_offset, meta.size, uri) {
            Ok(layout) => return Ok(layout),
            Err(e) => {
                tracing::warn!(uri = %uri, error = %e, "sidecar does not fit the block lists; reading their sizes")
            }
        }
    }
    let counts = reads.block_counts(format, info.nlist, data_offset, meta).await?;
    ListRanges::with_format(format, &counts, data_offset, meta.size, uri)
}

/// Parses the header with Faiss on the compute pool, reading more of the
/// file while it asks for more (at most `MAX_OPEN_REQUESTS` reads in all):
/// a longer prefix, or, for the parts of a wrapped index after its lists
/// (a refine index's head, an id map's count), segments past them.
/// Returns the parsed header and the prefix read.
async fn parse_header(
    reads: &HeaderReads<'_>,
    options: &OpenOptions,
    first: Bytes,
    meta: &ObjectMeta,
) -> Result<(ivflake_faiss::Index, BytesMut)> {
    let size = meta.size;
    let mut prefix = BytesMut::from(first.as_ref());
    let mut segments: Vec<(u64, Bytes)> = Vec::new();
    let mut requests = 1;
    // Any single C++ allocation while parsing: a few times the file, with
    // room for sparse list-size tables of huge, mostly empty indexes.
    let alloc_cap = (size as usize).saturating_mul(2).max(256 << 20);
    loop {
        let bytes = prefix.clone().freeze();
        let parts = segments.clone();
        let parsed = options
            .compute
            .run(move || {
                let parts: Vec<(u64, &[u8])> = parts.iter().map(|(at, b)| (*at, b.as_ref())).collect();
                Ok(ivflake_faiss::open_header_parts(&bytes, &parts, size, alloc_cap))
            })
            .await?;
        let needed = match parsed {
            Ok(HeaderProbe::Opened(index)) => return Ok((index, prefix)),
            Ok(HeaderProbe::NeedBytes(end)) => prefix.len() as u64..end,
            Ok(HeaderProbe::NeedRange(range)) => range,
            Err(e) => return Err(Error::from_header(reads.uri(), e)),
        };
        if requests >= MAX_OPEN_REQUESTS {
            return Err(Error::Corrupt {
                uri: reads.uri().to_string(),
                reason: format!("header still incomplete after {requests} reads"),
            });
        }
        requests += 1;
        let have = prefix.len() as u64;
        if needed.start <= have {
            // What Faiss asked for plus slack for the header's tail
            // (codebooks, list sizes), at least doubling: a round trip
            // costs more than a few hundred KiB more of transfer.
            let slack = (needed.end / 4).max(HEADER_TAIL_SLACK);
            let want = needed.end.saturating_add(slack).max(have.saturating_mul(2)).min(size);
            let more = reads.more_bytes(have, want, meta.e_tag.as_deref()).await?;
            prefix.extend_from_slice(&more);
            continue;
        }
        // Past the lists: a segment of its own (the parse skips what lies
        // between), or the segment it continues grown.
        let end = needed.end.max(needed.start.saturating_add(SEGMENT_READ)).min(size);
        match segments
            .iter_mut()
            .find(|(at, b)| *at <= needed.start && needed.start <= *at + b.len() as u64)
        {
            Some((at, bytes)) => {
                let from = *at + bytes.len() as u64;
                let more = reads.more_bytes(from, end.max(from), meta.e_tag.as_deref()).await?;
                *bytes = [bytes.as_ref(), more.as_ref()].concat().into();
            }
            None => {
                let more = reads.more_bytes(needed.start, end, meta.e_tag.as_deref()).await?;
                segments.push((needed.start, more));
            }
        }
    }
}

/// Names what a file is when its first bytes are not a Faiss float index.
fn check_magic(prefix: &[u8], uri: &str) -> Result<()> {
    if prefix.len() < 4 {
        return Err(Error::Corrupt {
            uri: uri.into(),
            reason: format!("file has only {} bytes", prefix.len()),
        });
    }
    let magic = &prefix[..4];
    // Every index type Faiss writes begins with `I` (`IwFl`, `IxPT`, `IHNf`, ...):
    // anything else, a text file say, is no Faiss index of any version.
    if magic[0] != b'I' && magic.iter().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Corrupt {
            uri: uri.into(),
            reason: format!(
                "not a Faiss index file: it starts with {:?}, where Faiss's index types start with \"I\"",
                String::from_utf8_lossy(magic)
            ),
        });
    }
    if !magic.iter().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::Corrupt {
            uri: uri.into(),
            reason: format!("not a Faiss index file: it starts with bytes {magic:02x?}"),
        });
    }
    if magic.starts_with(b"IB") {
        return Err(Error::Unsupported {
            uri: uri.into(),
            reason: format!(
                "binary index ({}); ivflake serves float IVF indexes",
                String::from_utf8_lossy(magic)
            ),
        });
    }
    Ok(())
}
