//! Compaction and garbage collection. A compaction folds the log into a
//! new base, a standard Faiss file, and commits a version naming it at the
//! next version position with a conditional create: searches in flight
//! finish on the version they hold, and of two compactions racing only one
//! commits. A trained base is written list by list: the header Faiss
//! writes for the new list sizes (`header_for_sizes`), then each list's
//! surviving base entries and its entries from the log, through a
//! multipart upload, so memory holds a few lists, not the index, and its
//! checksum sidecar is hashed on the way and written beside it, and its
//! attributes object list by list with it (`fold_attrs.rs`). The first
//! compaction of an empty index with enough vectors (`min_train_per_list`
//! per list of the factory) trains the factory's quantizer and codec
//! instead, in memory. Every compaction also keeps the rows its log
//! changed, by id (`kept.rs`). `gc` deletes what no version within the
//! retention period names.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ivflake_faiss::{HeaderProbe, IndexInfo, ListFormat, Metric};
use object_store::{ObjectStoreExt, WriteMultipart};
use xxhash_rust::xxh3::{xxh3_64, Xxh3Default};

use super::delta::DeltaBuilder;
use super::fold_attrs::AttributeFold;
use super::version::{new_base_name, now_ms, Version, BASES_DIR, LOG_DIR, ROWS_DIR};
use super::writer::MAX_VIEW_AGE;
use super::{gate, list_under, MutableIndex};
use crate::error::{Error, Result};
use crate::index::IvfIndex;
use crate::manifest::{Manifest, ManifestList};

/// Lists read per request batch while folding.
const LISTS_PER_READ: usize = 64;
/// Multipart upload parts (S3's minimum is 5 MiB).
const PART_BYTES: usize = 8 << 20;
/// Parts in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// An untrained index trains once it holds this many vectors per list
    /// of its factory (Faiss warns below 39).
    pub min_train_per_list: usize,
    /// Train a fresh quantizer and codec with the index's factory on every
    /// kept raw vector (`retrain.rs`), rather than fold into the base's.
    pub retrain: bool,
    /// The factory an untrained index's first training builds, instead of
    /// the one it was created with (e.g. chosen from its vector count,
    /// known only now); it becomes the index's factory.
    pub factory: Option<String>,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            min_train_per_list: 39,
            retrain: false,
            factory: None,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CompactReport {
    /// The version it committed.
    pub version: u64,
    pub base: String,
    /// Entries in the new base.
    pub entries: u64,
    /// Log records folded in.
    pub records: u64,
    /// Whether it trained a quantizer and codec (an empty index's first,
    /// or a retrain).
    pub trained: bool,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub ms: f64,
}

/// What `gc` deleted.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct GcReport {
    pub bases: usize,
    pub log_records: usize,
    pub versions: usize,
}

/// Whether writes can go to an index like this: array lists, unwrapped,
/// lists in the file itself.
pub(super) fn check_writable(uri: &str, info: &IndexInfo) -> Result<()> {
    let reason = if !matches!(info.list_format, ListFormat::Array { .. }) {
        "writes need array lists; fast-scan block lists are read-only"
    } else if info.refine.is_some() || info.id_map.is_some() || info.on_disk.is_some() {
        "writes need an unwrapped IVF index with its lists in the file"
    } else {
        return Ok(());
    };
    Err(Error::Unsupported {
        uri: uri.to_string(),
        reason: reason.into(),
    })
}

pub(super) struct Built {
    pub entries: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl MutableIndex {
    /// Folds the log into a new base and makes it current. `None` when
    /// there was nothing to fold.
    pub async fn compact(&self, options: &CompactOptions) -> Result<Option<CompactReport>> {
        let started = Instant::now();
        self.refresh().await?;
        let (position, mut version, base, builder) = {
            let s = self.shared.state.lock().await;
            (s.position, s.version.clone(), s.base.clone(), s.builder.clone())
        };
        if let Some(factory) = options.factory.as_ref().filter(|_| !version.trained) {
            let metric = Metric::from_name(&version.metric).unwrap_or(Metric::L2);
            check_writable(
                &self.shared.root.uri,
                ivflake_faiss::Index::factory(version.d, factory, metric)?.info(),
            )?;
            version.factory = factory.clone();
        }
        let records = builder.next_position() - version.log_start;
        let live = base.info().ntotal.max(0) as u64 + builder.snapshot().entries;
        let train_at = if version.trained {
            None
        } else {
            let metric = Metric::from_name(&version.metric).unwrap_or(Metric::L2);
            let nlist = ivflake_faiss::Index::factory(version.d, &version.factory, metric)?
                .info()
                .nlist;
            Some((nlist * options.min_train_per_list) as u64)
        };
        let trains = options.retrain || train_at.is_some_and(|at| live >= at.max(1));
        if records == 0 && !trains {
            return Ok(None);
        }
        let name = new_base_name();
        let mut built = if options.retrain {
            self.retrain(&version, &base, &builder, &name).await?
        } else if trains {
            self.train(&version, &base, &builder, &name).await?
        } else {
            self.fold(&base, &builder, &name).await?
        };
        let mut rows = version.rows.clone();
        if let Some(kept) = self
            .keep_rows(&version, &builder, super::code_size(base.info()))
            .await?
        {
            built.bytes_read += kept.bytes_read;
            built.bytes_written += kept.bytes_written;
            rows.push(kept.name);
        }
        let text = if version.text_fields.is_empty() {
            None
        } else {
            let new = IvfIndex::open_at(self.shared.root.child(&name)?, self.shared.options.open.clone()).await?;
            self.build_text(&new, &version.text_fields).await?
        };
        gate::reach("compact:uploaded");
        let next = Version {
            text,
            base: name.clone(),
            codec: if trains { name.clone() } else { version.codec.clone() },
            trained: version.trained || trains,
            log_start: builder.next_position(),
            created_ms: now_ms(),
            rows,
            ..version
        };
        if !self.shared.versions.create_at(position + 1, next.encode()).await? {
            return Err(Error::Conflict {
                uri: self.uri().to_string(),
                reason: format!("another compaction committed version {} first", position + 1),
            });
        }
        gate::reach("compact:committed");
        self.refresh().await?;
        Ok(Some(CompactReport {
            version: position + 1,
            base: name,
            entries: built.entries,
            records,
            trained: trains,
            bytes_read: built.bytes_read,
            bytes_written: built.bytes_written,
            ms: started.elapsed().as_secs_f64() * 1000.0,
        }))
    }

    /// The new base list by list: surviving base entries, then the log's.
    async fn fold(&self, base: &IvfIndex, builder: &DeltaBuilder, name: &str) -> Result<Built> {
        let object = base.object();
        let from = &object.location;
        let ranges = base.list_ranges();
        let nlist = ranges.nlist();
        let cs = super::code_size(base.info());
        let read = |wanted: Vec<std::ops::Range<u64>>| async move {
            from.store
                .get_ranges(&from.path, &wanted)
                .await
                .map_err(|e| Error::from_store(&from.uri, None, e))
        };
        let mut bytes_read = 0u64;
        let header_range = 0..ranges.header_len();
        let header = read(std::iter::once(header_range).collect()).await?.remove(0);
        bytes_read += header.len() as u64;
        let cap = (object.size as usize).saturating_mul(2).max(256 << 20);
        let mut faiss = match ivflake_faiss::open_header(&header, object.size, cap)? {
            HeaderProbe::Opened(index) => index,
            _ => {
                return Err(Error::Corrupt {
                    uri: from.uri.clone(),
                    reason: "its header does not end where its lists start".into(),
                })
            }
        };
        let survives = |ids: &[u8]| -> Vec<bool> {
            ids.chunks_exact(8)
                .map(|c| !builder.hides(i64::from_le_bytes(c.try_into().unwrap_or_default())))
                .collect()
        };
        // Pass 1, when ids were changed: how many base entries survive per list.
        let mut sizes: Vec<u64> = (0..nlist).map(|l| ranges.get(l).map_or(0, |r| r.count)).collect();
        if builder.changed() > 0 {
            for chunk in (0..nlist).collect::<Vec<_>>().chunks(LISTS_PER_READ) {
                let lists: Vec<usize> = chunk.iter().copied().filter(|&l| sizes[l] > 0).collect();
                let wanted = lists
                    .iter()
                    .filter_map(|&l| ranges.get(l))
                    .map(|r| r.offset + r.count * cs as u64..r.offset + r.len)
                    .collect();
                for (&l, ids) in lists.iter().zip(read(wanted).await?) {
                    bytes_read += ids.len() as u64;
                    sizes[l] = survives(&ids).iter().filter(|&&s| s).count() as u64;
                }
            }
        }
        for (l, size) in sizes.iter_mut().enumerate() {
            *size += builder.list(l).0.len() as u64;
        }
        let header = faiss.header_for_sizes(&sizes)?;
        // The new base's checksum sidecar, hashed as the lists stream out.
        let mut sidecar = Manifest {
            file_len: 0,
            header_len: header.len() as u64,
            header_xxh3: xxh3_64(&header),
            lists: Vec::with_capacity(nlist),
        };
        let (to, mut writer) = self.upload(name).await?;
        let mut attrs = AttributeFold::start(base, builder.snapshot(), &to).await?;
        let mut bytes_written = header.len() as u64;
        writer.write(&header);
        // Pass 2: every list, in order.
        let outcome: Result<()> = async {
            for chunk in (0..nlist).collect::<Vec<_>>().chunks(LISTS_PER_READ) {
                let in_base: Vec<usize> = chunk
                    .iter()
                    .copied()
                    .filter(|&l| ranges.get(l).is_some_and(|r| r.count > 0))
                    .collect();
                let wanted = in_base
                    .iter()
                    .filter_map(|&l| ranges.get(l))
                    .map(|r| r.range())
                    .collect();
                let mut fetched = in_base.iter().copied().zip(read(wanted).await?);
                let columns = match attrs.as_mut() {
                    Some(a) => a.read(&in_base).await?,
                    None => Default::default(),
                };
                let mut next = fetched.next();
                for &l in chunk {
                    let (mut codes, mut ids) = (Vec::new(), Vec::new());
                    let mut kept = Vec::new();
                    if let Some((_, bytes)) = next.as_ref().filter(|(at, _)| *at == l) {
                        bytes_read += bytes.len() as u64;
                        let count = ranges.get(l).map_or(0, |r| r.count as usize);
                        let (base_codes, base_ids) = bytes.split_at(count * cs);
                        kept = survives(base_ids);
                        for (i, &keep) in kept.iter().enumerate() {
                            if keep {
                                codes.extend_from_slice(&base_codes[i * cs..(i + 1) * cs]);
                                ids.extend_from_slice(&base_ids[i * 8..(i + 1) * 8]);
                            }
                        }
                        next = fetched.next();
                    }
                    if let Some(a) = attrs.as_mut() {
                        a.push(l, &columns, &kept)?;
                    }
                    let (delta_ids, delta_codes) = builder.list(l);
                    codes.extend_from_slice(delta_codes);
                    ids.extend(delta_ids.iter().flat_map(|id| id.to_le_bytes()));
                    if ids.len() as u64 != sizes[l] * 8 {
                        return Err(Error::Internal(format!("list {l} changed between the passes")));
                    }
                    let mut hash = Xxh3Default::new();
                    hash.update(&codes);
                    hash.update(&ids);
                    sidecar.lists.push(ManifestList {
                        offset: bytes_written,
                        len: (codes.len() + ids.len()) as u64,
                        xxh3: hash.digest(),
                    });
                    bytes_written += (codes.len() + ids.len()) as u64;
                    writer.write(&codes);
                    writer.write(&ids);
                }
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| Error::from_store(&to.uri, None, e))?;
                if let Some(a) = attrs.as_mut() {
                    a.wait(PARTS_IN_FLIGHT).await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            let _ = writer.abort().await;
            if let Some(a) = attrs {
                a.abort().await;
            }
            return Err(e);
        }
        writer.finish().await.map_err(|e| Error::from_store(&to.uri, None, e))?;
        sidecar.file_len = bytes_written;
        sidecar.write(&to).await?;
        if let Some(a) = attrs {
            bytes_read += a.bytes_read;
            bytes_written += a.finish().await?;
        }
        Ok(Built {
            entries: sizes.iter().sum(),
            bytes_read,
            bytes_written,
        })
    }

    /// An empty index's first trained base: every vector (the exact
    /// bootstrap's codes are the vectors themselves) trains the factory's
    /// quantizer and codec and is added, in memory.
    async fn train(&self, version: &Version, base: &IvfIndex, builder: &DeltaBuilder, name: &str) -> Result<Built> {
        let d = version.d;
        let object = base.object();
        let from = &object.location;
        let raw = from
            .store
            .get(&from.path)
            .await
            .map_err(|e| Error::from_store(&from.uri, None, e))?
            .bytes()
            .await
            .map_err(|e| Error::from_store(&from.uri, None, e))?;
        let (mut vectors, mut ids) = (Vec::<f32>::new(), Vec::<i64>::new());
        let mut kept = Vec::new();
        let mut take = |codes: &[u8], list_ids: &[u8], hide: bool| {
            for (code, id) in codes.chunks_exact(d * 4).zip(list_ids.chunks_exact(8)) {
                let id = i64::from_le_bytes(id.try_into().unwrap_or_default());
                let keep = !(hide && builder.hides(id));
                if hide {
                    kept.push(keep);
                }
                if keep {
                    ids.push(id);
                    vectors.extend(
                        code.chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    );
                }
            }
        };
        if let Some(r) = base.list_ranges().get(0).filter(|r| r.count > 0) {
            let list = raw
                .get(r.offset as usize..(r.offset + r.len) as usize)
                .ok_or_else(|| Error::Internal("the bootstrap's list is past its file".into()))?;
            let (codes, list_ids) = list.split_at(r.count as usize * d * 4);
            take(codes, list_ids, true);
        }
        let (delta_ids, delta_codes) = builder.list(0);
        let delta_ids: Vec<u8> = delta_ids.iter().flat_map(|id| id.to_le_bytes()).collect();
        take(delta_codes, &delta_ids, false);
        // The attributes, row for row with `ids`, before they are moved.
        let to = self.shared.root.child(name)?;
        let mut attrs = AttributeFold::start(base, builder.snapshot(), &to).await?;
        let table = match attrs.as_mut() {
            Some(a) => {
                let columns = a.read(&[0]).await?;
                a.rows_of(0, &columns, &kept)?
            }
            None => None,
        };
        let mut built = self.build_trained(version, name, vectors, ids, attrs, table).await?;
        built.bytes_read += raw.len() as u64;
        Ok(built)
    }

    /// Trains `version`'s factory on `vectors`, adds them under `ids`, and
    /// writes the new base `name` and (with `attrs`) its attributes object
    /// from `table`, row for row with `ids`, in the trained lists' order.
    pub(super) async fn build_trained(
        &self,
        version: &Version,
        name: &str,
        vectors: Vec<f32>,
        ids: Vec<i64>,
        attrs: Option<AttributeFold>,
        table: Option<arrow_array::RecordBatch>,
    ) -> Result<Built> {
        let d = version.d;
        let metric = Metric::from_name(&version.metric).unwrap_or(Metric::L2);
        let factory = version.factory.clone();
        let entries = ids.len() as u64;
        let row_of: std::collections::HashMap<i64, u32> =
            ids.iter().enumerate().map(|(row, &id)| (id, row as u32)).collect();
        let file = self
            .shared
            .options
            .open
            .compute
            .run(move || {
                let mut index = ivflake_faiss::Index::factory(d, &factory, metric)?;
                index.train(&vectors)?;
                index.add_with_ids(&vectors, &ids)?;
                Ok(index.to_bytes()?)
            })
            .await?;
        let mut bytes_written = file.len() as u64;
        let (to, mut writer) = self.upload(name).await?;
        writer.put(Bytes::from(file));
        writer.finish().await.map_err(|e| Error::from_store(&to.uri, None, e))?;
        let mut bytes_read = 0;
        if let (Some(mut a), Some(batch)) = (attrs, table) {
            // The trained lists' order, as the new file holds them.
            let new = IvfIndex::open_at(to, self.shared.options.open.clone()).await?;
            for list_ids in new.list_ids().await? {
                let rows: Vec<u32> = list_ids.iter().filter_map(|id| row_of.get(id).copied()).collect();
                let rows = arrow_select::take::take_record_batch(&batch, &arrow_array::UInt32Array::from(rows))
                    .map_err(crate::attributes::filter::arrow_error)?;
                a.push_batch(Some(&rows))?;
            }
            bytes_read += a.bytes_read;
            bytes_written += a.finish().await?;
        }
        Ok(Built {
            entries,
            bytes_read,
            bytes_written,
        })
    }

    /// A multipart upload of the new base `name` (a random name: nothing
    /// else writes it, so it needs no conditional create).
    async fn upload(&self, name: &str) -> Result<(crate::location::IndexLocation, WriteMultipart)> {
        let to = self.shared.root.child(name)?;
        let upload = to
            .store
            .put_multipart(&to.path)
            .await
            .map_err(|e| Error::from_store(&to.uri, None, e))?;
        Ok((to, WriteMultipart::new_with_chunk_size(upload, PART_BYTES)))
    }

    /// Deletes base files, log records and commit points that neither the
    /// current version nor any version replaced less than `retention` ago
    /// needs (a replica may still read one for its staleness bound), and
    /// only those older than `retention` themselves (a compaction's new
    /// base waits that long to be committed). `retention` must exceed the
    /// longest compaction and the longest a reader keeps an old version.
    /// Log records younger than two minutes stay whatever `retention` is.
    pub async fn gc(&self, retention: Duration) -> Result<GcReport> {
        let shared = &self.shared;
        let positions = shared.versions.positions().await?;
        let Some((&current, older)) = positions.split_last() else {
            return Ok(GcReport::default());
        };
        let cutoff = now_ms().saturating_sub(retention.as_millis() as u64);
        let newest = Version::decode(&shared.versions.read(current).await?, self.uri())?;
        let mut successor_created = newest.created_ms;
        let mut kept = vec![newest];
        let mut dropped = Vec::new();
        // Newest first: a version is aged from when its successor replaced
        // it (readers move on then), not from its own creation.
        for &p in older.iter().rev() {
            let v = Version::decode(&shared.versions.read(p).await?, self.uri())?;
            let created = v.created_ms;
            if successor_created >= cutoff {
                kept.push(v);
            } else {
                dropped.push(p);
            }
            successor_created = created;
        }
        dropped.reverse();
        let named: HashSet<&str> = kept
            .iter()
            .flat_map(|v| {
                std::iter::once(v.base.as_str())
                    .chain(v.rows.iter().map(String::as_str))
                    .chain(v.text.iter().map(|t| t.name.as_str()))
            })
            .collect();
        let log_start = kept.iter().map(|v| v.log_start).min().unwrap_or(0);
        let old = |meta: &object_store::ObjectMeta| (meta.last_modified.timestamp_millis() as u64) < cutoff;
        let mut report = GcReport::default();
        let mut files = list_under(&shared.root, BASES_DIR).await?;
        files.extend(list_under(&shared.root, ROWS_DIR).await?);
        for meta in files {
            let relative = meta
                .location
                .as_ref()
                .strip_prefix(shared.root.path.as_ref())
                .unwrap_or(meta.location.as_ref())
                .trim_start_matches('/');
            // A base's sidecar and attributes go with their base.
            let base = relative
                .strip_suffix(crate::manifest::MANIFEST_SUFFIX)
                .or_else(|| relative.strip_suffix(crate::attributes::ATTRIBUTES_SUFFIX))
                .unwrap_or(relative);
            if !named.contains(base) && old(&meta) {
                shared
                    .root
                    .store
                    .delete(&meta.location)
                    .await
                    .map_err(|e| Error::from_store(self.uri(), None, e))?;
                report.bases += 1;
            }
        }
        // Log records are kept while a writer may not have seen them
        // (writer.rs, `MAX_VIEW_AGE`), whatever the retention.
        let record_cutoff = cutoff.min(now_ms().saturating_sub(2 * MAX_VIEW_AGE.as_millis() as u64));
        for meta in list_under(&shared.root, LOG_DIR).await? {
            let Some(p) = shared.log.position_of(meta.location.filename().unwrap_or_default()) else {
                continue;
            };
            if p < log_start && (meta.last_modified.timestamp_millis() as u64) < record_cutoff {
                shared.log.delete(p).await?;
                report.log_records += 1;
            }
        }
        for p in dropped {
            shared.versions.delete(p).await?;
            report.versions += 1;
        }
        Ok(report)
    }
}
