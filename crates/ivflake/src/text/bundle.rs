//! A base's text index as one object, `<base>.text`:
//!
//! ```text
//! cold files (the postings), as tantivy wrote them
//! tail: framed (magic IVFTEXT1, xxh3 trailer): u32 manifest length | manifest (JSON) | blobs
//! ```
//!
//! The blobs are the files opening reads whole (term dictionary, field
//! norms, metadata), the byte ranges it reads of the cold files (the
//! hotcache, found by recording an open at build time, as Quickwit does),
//! and the documents' ids (bit-packed, `ids.rs`), document `i` being the
//! base's `i`-th entry in list order. The commit point records the tail's length, so an open is
//! one GET; a query then fetches its terms' postings, each term's bytes a
//! "list" of the fetch scheduler (cached in its memory and disk tiers), in
//! one wave.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use tantivy::directory::{Directory, OwnedBytes, RamDirectory};
use tantivy::schema::Field;
use tantivy::{Index, Searcher, Term};

use super::directory::{with_postings, BundleDirectory, BundleFile, Fetched, Recorder};
use super::ids::PackedIds;
use super::segment::{self, Ask, Candidates};
use super::{analyzer, tantivy_error, TextField};
use crate::error::{Error, Result};
use crate::fetch::{FetchScheduler, ListRequest};
use crate::framing::Framing;
use crate::layout::ListRange;
use crate::location::IndexLocation;
use crate::object::IndexObject;
use crate::stats::SearchIo;

const FRAMING: Framing = Framing::new(b"IVFTEXT1", 2);
/// The largest tail an open reads: its term dictionaries, norms and ids
/// (about 9 bytes a document and the dictionaries' terms).
const MAX_TAIL_BYTES: u64 = 2 << 30;
/// Files whose bytes only postings reads touch past what opening reads.
const COLD_EXTENSIONS: [&str; 3] = ["idx", "pos", "store"];

/// Where a bundle is, as its commit point records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRef {
    /// Under the index's prefix (`bases/….text`).
    pub name: String,
    pub size: u64,
    /// Bytes of the tail: the last `tail` bytes of the object.
    pub tail: u64,
    pub docs: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Span {
    at: u64,
    len: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileEntry {
    path: String,
    len: u64,
    /// Held whole, in the blobs.
    #[serde(default)]
    whole: Option<Span>,
    /// Cold: where its bytes start in the object, and its held ranges.
    #[serde(default)]
    cold_at: Option<u64>,
    #[serde(default)]
    hot: Vec<(u64, Span)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    docs: u64,
    fields: Vec<TextField>,
    files: Vec<FileEntry>,
    /// The postings file, and per field where its postings start in it.
    postings_file: String,
    postings_start: Vec<u64>,
    ids: Span,
}

/// Writes a bundle of `docs` (each document's text per field), whose ids
/// are `ids`: the object's bytes and its tail's length.
pub(crate) fn build_bundle(
    fields: &[TextField],
    docs: impl Iterator<Item = Vec<Option<String>>>,
    ids: &[i64],
) -> Result<(Vec<u8>, u64)> {
    let ram = RamDirectory::create();
    let index = segment::write_index(ram.clone(), fields, docs)?;
    drop(index);
    // Opening it again through a recorder: what that reads is the hotcache.
    let recorder = Recorder::new(ram.clone());
    let index = Index::open(recorder.clone()).map_err(tantivy_error)?;
    analyzer::register_all(&index);
    let searcher = segment::searcher_of(&index)?;
    let readers = searcher.segment_readers();
    if readers.len() > 1 {
        return Err(Error::Internal(format!("a text bundle of {} segments", readers.len())));
    }
    let mut postings_start = Vec::with_capacity(fields.len());
    let mut postings_file = String::new();
    for i in 0..fields.len() {
        let field = Field::from_field_id(i as u32);
        for r in readers {
            r.get_fieldnorms_reader(field).map_err(tantivy_error)?;
        }
        let opened = recorder.take();
        let start = match readers.first() {
            Some(r) => {
                r.inverted_index(field).map_err(tantivy_error)?;
                // Opening a field reads the 8 bytes before its postings.
                let reads = recorder.take();
                let (path, range) = reads
                    .iter()
                    .rev()
                    .find(|(p, r)| is_cold(p) && r.len() == 8)
                    .ok_or_else(|| Error::Internal("opening a text field read no postings header".into()))?;
                postings_file = path.to_string_lossy().into_owned();
                recorder
                    .reads
                    .lock()
                    .map_err(|_| Error::Internal("poisoned".into()))?
                    .extend(reads.clone());
                range.end as u64
            }
            None => 0,
        };
        recorder
            .reads
            .lock()
            .map_err(|_| Error::Internal("poisoned".into()))?
            .extend(opened);
        postings_start.push(start);
    }
    let reads = recorder.take();
    drop(searcher);
    drop(index);
    let mut paths: Vec<PathBuf> = ram
        .atomic_read(std::path::Path::new(".managed.json"))
        .ok()
        .and_then(|raw| serde_json::from_slice::<Vec<PathBuf>>(&raw).ok())
        .unwrap_or_default();
    paths.push(PathBuf::from("meta.json"));
    paths.push(PathBuf::from(".managed.json"));
    paths.sort();
    paths.dedup();
    let mut cold = Vec::new();
    let mut blobs = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        let Ok(handle) = ram.get_file_handle(&path) else {
            continue;
        };
        let bytes = handle
            .read_bytes(0..handle.len())
            .map_err(tantivy_error)?
            .as_slice()
            .to_vec();
        let name = path.to_string_lossy().into_owned();
        let mut entry = FileEntry {
            path: name,
            len: bytes.len() as u64,
            whole: None,
            cold_at: None,
            hot: Vec::new(),
        };
        if is_cold(&path) {
            entry.cold_at = Some(cold.len() as u64);
            let mut hot: Vec<Range<usize>> = reads
                .iter()
                .filter(|(p, _)| *p == path)
                .map(|(_, r)| r.clone())
                .collect();
            for r in merge_ranges(&mut hot) {
                entry.hot.push((
                    r.start as u64,
                    Span {
                        at: blobs.len() as u64,
                        len: r.len() as u64,
                    },
                ));
                blobs.extend_from_slice(&bytes[r]);
            }
            cold.extend_from_slice(&bytes);
        } else {
            entry.whole = Some(Span {
                at: blobs.len() as u64,
                len: bytes.len() as u64,
            });
            blobs.extend_from_slice(&bytes);
        }
        files.push(entry);
    }
    let packed = PackedIds::encode(ids);
    let ids_span = Span {
        at: blobs.len() as u64,
        len: packed.len() as u64,
    };
    blobs.extend_from_slice(&packed);
    let manifest = Manifest {
        docs: ids.len() as u64,
        fields: fields.to_vec(),
        files,
        postings_file,
        postings_start,
        ids: ids_span,
    };
    let manifest = serde_json::to_vec(&manifest).map_err(tantivy_error)?;
    let mut body = Vec::with_capacity(4 + manifest.len() + blobs.len());
    body.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
    body.extend_from_slice(&manifest);
    body.extend_from_slice(&blobs);
    let tail = FRAMING.encode(&body);
    let tail_len = tail.len() as u64;
    cold.extend_from_slice(&tail);
    Ok((cold, tail_len))
}

fn is_cold(path: &std::path::Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| COLD_EXTENSIONS.contains(&e))
}

/// Sorted and merged where they touch.
fn merge_ranges(ranges: &mut [Range<usize>]) -> Vec<Range<usize>> {
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut out: Vec<Range<usize>> = Vec::new();
    for r in ranges.iter() {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r.clone()),
        }
    }
    out
}

/// An opened bundle: its searcher, ids, and where its postings are.
pub(crate) struct TextBundle {
    pub uri: String,
    searcher: Searcher,
    ids: PackedIds,
    /// Per field, the scheduler's identity for its terms' postings.
    objects: Vec<Arc<IndexObject>>,
    /// Where the postings file starts in the object, and each field's
    /// postings in it.
    postings_at: u64,
    postings_start: Vec<u64>,
}

impl std::fmt::Debug for TextBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextBundle").field("uri", &self.uri).finish()
    }
}

impl TextBundle {
    /// Opens the bundle at `location` from its tail: one GET. Parsing runs
    /// on the caller's thread (the caller puts it on the compute pool).
    pub async fn read_tail(location: &IndexLocation, r: &BundleRef) -> Result<bytes::Bytes> {
        if r.tail > r.size || r.tail > MAX_TAIL_BYTES {
            return Err(corrupt(
                &location.uri,
                format!("a {}-byte tail of a {}-byte bundle", r.tail, r.size),
            ));
        }
        location
            .store
            .get_range(&location.path, r.size - r.tail..r.size)
            .await
            .map_err(|e| Error::from_store(&location.uri, None, e))
    }

    /// Parses a tail read by [`TextBundle::read_tail`].
    pub fn parse(location: IndexLocation, r: &BundleRef, fields: &[TextField], tail: &[u8]) -> Result<Self> {
        let uri = location.uri.clone();
        let body = FRAMING
            .decode(tail)
            .map_err(|e| corrupt(&uri, format!("its tail: {e}")))?;
        let body = &tail[body];
        let manifest_len = body
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .filter(|&n| 4 + n <= body.len())
            .ok_or_else(|| corrupt(&uri, "its manifest is past its tail".into()))?;
        let manifest: Manifest = serde_json::from_slice(&body[4..4 + manifest_len])
            .map_err(|e| corrupt(&uri, format!("its manifest: {e}")))?;
        let blobs = OwnedBytes::new(body[4 + manifest_len..].to_vec());
        if manifest.fields != fields {
            return Err(corrupt(&uri, "its fields are not the index's text fields".into()));
        }
        let cold_len = r.size - r.tail;
        let blob = |s: &Span| -> Result<OwnedBytes> {
            let end = s.at.checked_add(s.len).filter(|&e| e <= blobs.len() as u64);
            match end {
                Some(end) => Ok(blobs.slice(s.at as usize..end as usize)),
                None => Err(corrupt(&uri, format!("a span {}+{} past its blobs", s.at, s.len))),
            }
        };
        let mut files = HashMap::new();
        let mut postings_at = None;
        for f in &manifest.files {
            let file = match (&f.whole, f.cold_at) {
                (Some(span), None) if span.len == f.len => BundleFile::Whole(blob(span)?),
                (None, Some(at)) if at.checked_add(f.len).is_some_and(|e| e <= cold_len) => {
                    if f.path == manifest.postings_file {
                        postings_at = Some(at);
                    }
                    let mut hot = Vec::with_capacity(f.hot.len());
                    for (start, span) in &f.hot {
                        if start.checked_add(span.len).is_none_or(|e| e > f.len) {
                            return Err(corrupt(&uri, format!("a held range of {} past its end", f.path)));
                        }
                        hot.push((*start as usize..(*start + span.len) as usize, blob(span)?));
                    }
                    BundleFile::Cold {
                        len: f.len as usize,
                        hot,
                    }
                }
                _ => return Err(corrupt(&uri, format!("file {} is neither whole nor cold", f.path))),
            };
            files.insert(PathBuf::from(&f.path), Arc::new(file));
        }
        if manifest.docs != r.docs {
            return Err(corrupt(
                &uri,
                format!("{} documents, its commit point says {}", manifest.docs, r.docs),
            ));
        }
        let ids = PackedIds::decode(blob(&manifest.ids)?.as_slice(), manifest.docs).map_err(|e| corrupt(&uri, e))?;
        let postings_at = match postings_at {
            Some(at) => at,
            None if manifest.docs == 0 => 0,
            None => return Err(corrupt(&uri, "no postings file".into())),
        };
        if manifest.postings_start.len() != fields.len() {
            return Err(corrupt(&uri, "a postings start per field is missing".into()));
        }
        let index = Index::open(BundleDirectory::new(files)).map_err(|e| corrupt(&uri, e.to_string()))?;
        analyzer::register_all(&index);
        let searcher = segment::searcher_of(&index).map_err(|e| corrupt(&uri, e.to_string()))?;
        if searcher.num_docs() != manifest.docs || searcher.segment_readers().len() > 1 {
            return Err(corrupt(
                &uri,
                format!("{} documents, its ids say {}", searcher.num_docs(), manifest.docs),
            ));
        }
        let object = IndexObject::new(location, r.size, None);
        let objects = (0..fields.len())
            .map(|i| Arc::new(object.region(&format!("text field {i}"))))
            .collect();
        Ok(Self {
            uri,
            searcher,
            ids,
            objects,
            postings_at,
            postings_start: manifest.postings_start,
        })
    }

    pub fn searcher(&self) -> &Searcher {
        &self.searcher
    }

    /// The id of document `doc`.
    pub fn id(&self, doc: u32) -> Option<i64> {
        self.ids.get(doc)
    }

    /// Fetches the postings of `terms` in field `field` in one wave
    /// (those in memory cost nothing).
    pub async fn fetch_postings(
        &self,
        scheduler: &FetchScheduler,
        field: usize,
        terms: &[String],
        io: &Arc<SearchIo>,
    ) -> Result<Arc<Fetched>> {
        let Some(reader) = self.searcher.segment_readers().first() else {
            return Ok(Arc::default());
        };
        let f = Field::from_field_id(field as u32);
        let inverted = reader.inverted_index(f).map_err(tantivy_error)?;
        let start = self.postings_start[field];
        let mut requests = Vec::new();
        let mut ranges = HashMap::new();
        for t in terms {
            let term = Term::from_field_text(f, t);
            let Some(ord) = inverted
                .terms()
                .term_ord(term.serialized_value_bytes())
                .map_err(tantivy_error)?
            else {
                continue;
            };
            let Some(info) = inverted
                .terms()
                .get(term.serialized_value_bytes())
                .map_err(tantivy_error)?
            else {
                continue;
            };
            let list = usize::try_from(ord).map_err(tantivy_error)?;
            let r = info.postings_range.clone();
            ranges.insert(list, start as usize + r.start..start as usize + r.end);
            requests.push(ListRequest {
                list,
                range: ListRange {
                    offset: self.postings_at + start + r.start as u64,
                    len: r.len() as u64,
                    count: info.doc_freq as u64,
                },
                align_at: 0,
            });
        }
        requests.sort_by_key(|r| r.range.offset);
        let mut fetched = Vec::with_capacity(requests.len());
        for (list, bytes) in scheduler.fetch(&self.objects[field], &requests, io).await {
            let bytes = bytes?;
            if let Some(range) = ranges.get(&list) {
                if bytes.len() != range.len() {
                    return Err(corrupt(
                        &self.uri,
                        format!("postings of {} bytes, not {}", bytes.len(), range.len()),
                    ));
                }
                fetched.push((range.clone(), bytes));
            }
        }
        Ok(Arc::new(fetched))
    }

    /// `ask`'s ranking, reading `fetched`'s postings.
    pub fn top(&self, ask: Ask<'_>, fetched: Arc<Fetched>) -> Result<Candidates> {
        with_postings(fetched, || segment::top(&self.searcher, ask))
    }
}

fn corrupt(uri: &str, reason: String) -> Error {
    Error::Corrupt {
        uri: uri.to_string(),
        reason: format!("text bundle: {reason}"),
    }
}
