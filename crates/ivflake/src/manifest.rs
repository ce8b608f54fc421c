//! The checksum manifest: an optional sidecar object next to an index
//! (`<index key>.ivfmanifest`) recording the header length, every list's
//! position and an xxh3-64 of the header and of each list, so open can skip the
//! header probe and every fetched list can be verified.
//!
//! This module owns the sidecar format, building it from one streamed read of
//! the index, and checking bytes against it. It must not fetch lists or decide
//! what a search does on a mismatch: the scheduler and `IvfIndex` do that.
//!
//! Format (little-endian, version 1):
//!
//! ```text
//! magic "IVFKMAN1" (8) | version u32 | file_len u64 | header_len u64 | header_xxh3 u64 | nlist u64
//! nlist × (offset u64 | len u64 | xxh3 u64)
//! xxh3 u64 of every byte before it
//! ```
//!
//! It stores no ETag: it describes the file's content, so it stays valid when
//! the index is copied, and `check_against` ties it to the file opened.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetResult, GetResultPayload, ObjectStoreExt, PutPayload};
use xxhash_rust::xxh3::{xxh3_64, Xxh3Default};

use crate::error::{Error, Result};
use crate::framing::{le_u64, FrameError, Framing, HEADER_LEN, TRAILER_LEN};
use crate::layout::ListRanges;
use crate::location::IndexLocation;
use crate::object::IndexObject;

/// The sidecar's key is the index's key with this appended.
pub const MANIFEST_SUFFIX: &str = ".ivfmanifest";

const FRAMING: Framing = Framing::new(b"IVFKMAN1", 1);
/// Magic, version, file_len, header_len, header_xxh3, nlist.
const FIXED_LEN: usize = HEADER_LEN + 4 * 8;
/// offset, len, xxh3.
const LIST_ENTRY_LEN: usize = 3 * 8;
/// The largest sidecar `read_at` accepts: 24 bytes a list covers 2^24-list
/// indexes (Faiss's largest billion-scale setups) and refuses a bogus object
/// before reading it into memory.
const MAX_SIDECAR_BYTES: u64 = 512 << 20;
/// A whole-file read has no overall deadline (index sizes span orders of
/// magnitude); a stream that yields nothing for this long is a dead connection.
const STREAM_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Block size for reading a local index. object_store's own file stream reads
/// 8 KiB per blocking task: about 0.3 GB/s on a 2-core box, where 4 MiB blocks
/// reach several GB/s (page cache) while keeping memory small.
const LOCAL_READ_BYTES: u64 = 4 << 20;

/// Where every list of one index file is and what its bytes hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub file_len: u64,
    pub header_len: u64,
    pub header_xxh3: u64,
    pub lists: Vec<ManifestList>,
}

/// Verifies fetched lists against the recorded checksums.
impl crate::object::ListVerifier for Manifest {
    fn verify(&self, list: usize, bytes: &[u8], uri: &str) -> Result<()> {
        self.verify_list(list, bytes, uri)
    }
}

/// One list's byte range in the index file and the xxh3-64 of those bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestList {
    pub offset: u64,
    pub len: u64,
    pub xxh3: u64,
}

impl Manifest {
    /// The sidecar's path: the index's path with [`MANIFEST_SUFFIX`] appended.
    pub fn sidecar_path(index: &Path) -> Path {
        let key = format!("{index}{MANIFEST_SUFFIX}");
        // Appending plain ASCII to a valid last segment keeps the path valid;
        // the fallback only exists so this can never panic.
        Path::parse(&key).unwrap_or_else(|_| Path::from(key.as_str()))
    }

    /// The sidecar's URI for an index URI, for messages.
    pub fn sidecar_uri(index_uri: &str) -> String {
        format!("{index_uri}{MANIFEST_SUFFIX}")
    }

    pub fn nlist(&self) -> usize {
        self.lists.len()
    }

    pub fn encode(&self) -> Bytes {
        let mut body = BytesMut::with_capacity(4 * 8 + self.lists.len() * LIST_ENTRY_LEN);
        body.put_u64_le(self.file_len);
        body.put_u64_le(self.header_len);
        body.put_u64_le(self.header_xxh3);
        body.put_u64_le(self.lists.len() as u64);
        for list in &self.lists {
            body.put_u64_le(list.offset);
            body.put_u64_le(list.len);
            body.put_u64_le(list.xxh3);
        }
        Bytes::from(FRAMING.encode(&body))
    }

    /// Strict: magic + format version, counts checked against the byte length
    /// before any allocation, offsets monotone and inside file_len, and a
    /// trailing xxh3 of everything before it. `Error::Corrupt` naming `uri`
    /// (the sidecar's) otherwise.
    pub fn decode(bytes: &[u8], uri: &str) -> Result<Self> {
        let corrupt = |reason: String| Error::Corrupt {
            uri: uri.to_string(),
            reason: format!("checksum sidecar: {reason}"),
        };
        let min_len = FIXED_LEN + TRAILER_LEN;
        match FRAMING.body_range(bytes) {
            Err(FrameError::Magic(magic)) => {
                return Err(corrupt(format!(
                    "not an ivflake checksum sidecar: it starts with bytes {magic:02x?}"
                )))
            }
            Err(FrameError::Version(version)) => {
                return Err(corrupt(format!(
                    "format version {version}; this build reads version {} (rebuild the sidecar)",
                    FRAMING.version
                )))
            }
            Err(e) => return Err(corrupt(e.to_string())),
            Ok(_) if bytes.len() < min_len => {
                return Err(corrupt(format!(
                    "truncated: {} bytes, shorter than the {min_len}-byte minimum",
                    bytes.len()
                )))
            }
            Ok(_) => {}
        }
        let word = |at: usize| le_u64(bytes, at).ok_or_else(|| corrupt(format!("no 8 bytes at offset {at}")));
        let file_len = word(HEADER_LEN)?;
        let header_len = word(HEADER_LEN + 8)?;
        let header_xxh3 = word(HEADER_LEN + 16)?;
        let nlist = word(HEADER_LEN + 24)?;
        // Checked before any allocation, so a damaged count cannot ask for memory.
        let expected = usize::try_from(nlist)
            .ok()
            .and_then(|n| n.checked_mul(LIST_ENTRY_LEN))
            .and_then(|b| b.checked_add(FIXED_LEN + TRAILER_LEN));
        if expected != Some(bytes.len()) {
            let need = expected.map_or_else(|| "more bytes than memory holds".to_string(), |n| format!("{n} bytes"));
            return Err(corrupt(format!(
                "it records {nlist} lists, which take {need}, but it has {} bytes (truncated or damaged)",
                bytes.len()
            )));
        }
        FRAMING
            .check_trailer(bytes)
            .map_err(|e| corrupt(format!("{e}: the sidecar is damaged")))?;
        let body_len = bytes.len() - TRAILER_LEN;
        if header_len > file_len {
            return Err(corrupt(format!(
                "header length {header_len} exceeds the file length {file_len}"
            )));
        }
        let mut lists = Vec::with_capacity(bytes[FIXED_LEN..body_len].len() / LIST_ENTRY_LEN);
        let mut prev_end = header_len;
        for (list, entry) in bytes[FIXED_LEN..body_len].chunks_exact(LIST_ENTRY_LEN).enumerate() {
            let field = |i: usize| le_u64(entry, i * 8).ok_or_else(|| corrupt(format!("list {list} is cut short")));
            let (offset, len, xxh3) = (field(0)?, field(1)?, field(2)?);
            if offset < prev_end {
                return Err(corrupt(format!(
                    "list {list} starts at byte {offset}, before the previous section ends at {prev_end}"
                )));
            }
            let end = offset.checked_add(len).filter(|end| *end <= file_len).ok_or_else(|| {
                corrupt(format!(
                    "list {list} ({len} bytes at {offset}) runs past the file's {file_len} bytes"
                ))
            })?;
            lists.push(ManifestList { offset, len, xxh3 });
            prev_end = end;
        }
        Ok(Self {
            file_len,
            header_len,
            header_xxh3,
            lists,
        })
    }

    /// Does this manifest describe this exact file? (file length, header
    /// length, header hash, nlist, and every list offset/len equal to the
    /// layout computed from the header.) `header` is the file's first bytes, at
    /// least `header_len` of them; only those are hashed. `Error::Corrupt`
    /// naming the first mismatch.
    pub fn check_against(&self, layout: &ListRanges, file_len: u64, header: &[u8], uri: &str) -> Result<()> {
        let stale = |what: String| Error::Corrupt {
            uri: uri.to_string(),
            reason: format!("checksum sidecar does not describe this file: {what}; rebuild it with `ivflake manifest`"),
        };
        if self.file_len != file_len {
            return Err(stale(format!(
                "it records {} bytes, the file has {file_len}",
                self.file_len
            )));
        }
        if self.header_len != layout.header_len() {
            return Err(stale(format!(
                "it records a {}-byte header, the file's is {} bytes",
                self.header_len,
                layout.header_len()
            )));
        }
        self.verify_header(header, uri)?;
        if self.lists.len() != layout.nlist() {
            return Err(stale(format!(
                "it records {} lists, the file has {}",
                self.lists.len(),
                layout.nlist()
            )));
        }
        for ((list, range), entry) in layout.iter().zip(&self.lists) {
            if range.offset != entry.offset || range.len != entry.len {
                return Err(stale(format!(
                    "list {list} is {} bytes at {} in the sidecar, {} bytes at {} in the file",
                    entry.len, entry.offset, range.len, range.offset
                )));
            }
        }
        Ok(())
    }

    /// Checks the header bytes (the file's first bytes, at least `header_len`
    /// of them) against the recorded hash, e.g. before parsing them.
    pub fn verify_header(&self, header: &[u8], uri: &str) -> Result<()> {
        let corrupt = |reason: String| Error::Corrupt {
            uri: uri.to_string(),
            reason,
        };
        let header = usize::try_from(self.header_len)
            .ok()
            .and_then(|n| header.get(..n))
            .ok_or_else(|| {
                corrupt(format!(
                    "got {} header bytes where the checksum sidecar records {}",
                    header.len(),
                    self.header_len
                ))
            })?;
        let got = xxh3_64(header);
        if got != self.header_xxh3 {
            return Err(corrupt(format!(
                "the header hashes to {got:016x}, the checksum sidecar records {:016x}; \
                 the sidecar is stale or the file changed: rebuild it with `ivflake manifest`",
                self.header_xxh3
            )));
        }
        Ok(())
    }

    /// `Err(Error::Checksum { uri, list })` when the bytes do not hash to the
    /// recorded xxh3 (or their length differs, or the list is out of range).
    pub fn verify_list(&self, list: usize, bytes: &[u8], uri: &str) -> Result<()> {
        match self.lists.get(list) {
            Some(entry) if entry.len == bytes.len() as u64 && xxh3_64(bytes) == entry.xxh3 => Ok(()),
            _ => Err(Error::Checksum {
                uri: uri.to_string(),
                list,
            }),
        }
    }

    /// Reads the whole index object once as a stream (one GET pinned with
    /// If-Match to the ETag seen at open), hashing chunk by chunk so memory
    /// stays bounded whatever the file size. `progress` gets bytes read so far.
    pub async fn build(
        object: &IndexObject,
        layout: &ListRanges,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<Manifest> {
        let (uri, e_tag) = (object.uri(), object.e_tag.as_deref());
        let store_error = |e| Error::from_store(uri, e_tag, e);
        let got = object
            .location
            .store
            .get_opts(
                &object.location.path,
                GetOptions::new().with_if_match(object.e_tag.clone()),
            )
            .await
            .map_err(store_error)?;
        if got.meta.size != object.size {
            // Only reachable when the store gives no ETag to pin.
            return Err(Error::IndexChanged {
                uri: uri.to_string(),
                e_tag: e_tag.unwrap_or("").to_string(),
            });
        }
        let mut chunks = byte_stream(got, uri, e_tag);
        let mut hasher = SectionHasher::new(layout, object.size);
        loop {
            let next = tokio::time::timeout(STREAM_STALL_TIMEOUT, chunks.next())
                .await
                .map_err(|_| {
                    broken_stream(
                        uri,
                        format!(
                            "no bytes for {STREAM_STALL_TIMEOUT:?} after {} of {}",
                            hasher.pos, object.size
                        ),
                    )
                })?;
            let Some(chunk) = next else { break };
            hasher.feed(&chunk?, uri)?;
            progress(hasher.pos);
        }
        hasher.finish(uri)
    }

    /// Writes the sidecar next to the index at `location` (an atomic object_store put).
    pub async fn write(&self, location: &IndexLocation) -> Result<()> {
        let path = Self::sidecar_path(&location.path);
        location
            .store
            .put(&path, PutPayload::from(self.encode()))
            .await
            .map_err(|e| Error::from_store(&Self::sidecar_uri(&location.uri), None, e))?;
        Ok(())
    }

    /// Reads and decodes the sidecar of the index at `location`; `Ok(None)`
    /// when there is none. One GET.
    pub async fn read_at(location: &IndexLocation) -> Result<Option<Manifest>> {
        let uri = Self::sidecar_uri(&location.uri);
        let path = Self::sidecar_path(&location.path);
        let got = match location.store.get_opts(&path, GetOptions::new()).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Error::from_store(&uri, None, e)),
        };
        if got.meta.size > MAX_SIDECAR_BYTES {
            return Err(Error::Corrupt {
                uri,
                reason: format!(
                    "checksum sidecar has {} bytes, more than the {MAX_SIDECAR_BYTES} any index needs",
                    got.meta.size
                ),
            });
        }
        let bytes = got.bytes().await.map_err(|e| Error::from_store(&uri, None, e))?;
        Self::decode(&bytes, &uri).map(Some)
    }
}

/// A whole-file stream that ended early, ran long or stalled: transient, as a
/// store error is.
fn broken_stream(uri: &str, reason: String) -> Error {
    Error::BrokenStream {
        uri: uri.to_string(),
        reason,
    }
}

/// The object's bytes in order. A local file is read in large blocks (see
/// [`LOCAL_READ_BYTES`]); any other store's stream is used as it comes.
fn byte_stream(got: GetResult, uri: &str, e_tag: Option<&str>) -> BoxStream<'static, Result<Bytes>> {
    match got.payload {
        GetResultPayload::File(file, _) => local_blocks(file, got.range),
        GetResultPayload::Stream(stream) => {
            let (uri, e_tag) = (uri.to_string(), e_tag.map(str::to_string));
            stream
                .map(move |chunk| chunk.map_err(|e| Error::from_store(&uri, e_tag.as_deref(), e)))
                .boxed()
        }
    }
}

fn local_blocks(file: std::fs::File, range: Range<u64>) -> BoxStream<'static, Result<Bytes>> {
    let state = (Some(file), range.start, range.end);
    futures::stream::try_unfold(state, move |(file, pos, end)| async move {
        let Some(mut file) = file.filter(|_| pos < end) else {
            return Ok(None);
        };
        // Blocking file I/O stays off the async workers.
        let (file, block) = tokio::task::spawn_blocking(move || {
            let want = (end - pos).min(LOCAL_READ_BYTES);
            let mut block = Vec::with_capacity(want as usize);
            file.seek(SeekFrom::Start(pos))
                .and_then(|_| (&mut file).take(want).read_to_end(&mut block))
                .map(|_| (file, block))
        })
        .await
        .map_err(|e| Error::Internal(format!("the file-reading task failed: {e}")))??;
        if block.is_empty() {
            // The file shrank under us; the length check after the stream reports it.
            return Ok(None);
        }
        let next = pos + block.len() as u64;
        Ok(Some((Bytes::from(block), (Some(file), next, end))))
    })
    .boxed()
}

/// Splits a stream of file bytes into the header and list sections and hashes
/// each one as its bytes go by.
struct SectionHasher<'a> {
    layout: &'a ListRanges,
    file_len: u64,
    /// Bytes fed so far.
    pos: u64,
    header: Xxh3Default,
    /// Hasher of list `lists.len()`, the one the stream is in.
    current: Xxh3Default,
    lists: Vec<ManifestList>,
}

impl<'a> SectionHasher<'a> {
    fn new(layout: &'a ListRanges, file_len: u64) -> Self {
        Self {
            layout,
            file_len,
            pos: 0,
            header: Xxh3Default::new(),
            current: Xxh3Default::new(),
            lists: Vec::with_capacity(layout.nlist()),
        }
    }

    fn feed(&mut self, chunk: &[u8], uri: &str) -> Result<()> {
        let start = self.pos;
        let end = start
            .checked_add(chunk.len() as u64)
            .filter(|end| *end <= self.file_len)
            .ok_or_else(|| {
                broken_stream(
                    uri,
                    format!("the store sent more than the file's {} bytes", self.file_len),
                )
            })?;
        // Offsets below are inside `start..end`, so these slices are in bounds.
        let part = |r: Range<u64>| &chunk[(r.start - start) as usize..(r.end - start) as usize];
        let header_len = self.layout.header_len();
        if start < header_len {
            self.header.update(part(start..end.min(header_len)));
        }
        while let Some(range) = self.layout.get(self.lists.len()) {
            let section = range.range();
            let (from, to) = (section.start.max(start), section.end.min(end));
            if from < to {
                self.current.update(part(from..to));
            }
            if section.end > end {
                break;
            }
            self.lists.push(ManifestList {
                offset: range.offset,
                len: range.len,
                xxh3: self.current.digest(),
            });
            self.current.reset();
        }
        self.pos = end;
        Ok(())
    }

    fn finish(self, uri: &str) -> Result<Manifest> {
        if self.pos != self.file_len || self.lists.len() != self.layout.nlist() {
            return Err(broken_stream(
                uri,
                format!("the stream ended after {} of {} bytes", self.pos, self.file_len),
            ));
        }
        Ok(Manifest {
            file_len: self.file_len,
            header_len: self.layout.header_len(),
            header_xxh3: self.header.digest(),
            lists: self.lists,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_hash_the_same_whatever_the_chunking() {
        // Header 10 bytes, lists of 2, 0, 1 vectors with 4-byte codes (12 bytes each), an empty last list.
        let layout = ListRanges::new(&[2, 0, 1, 0], 4, 10, 10 + 36, "t").unwrap();
        let file: Vec<u8> = (0..46u8).collect();
        let whole = {
            let mut h = SectionHasher::new(&layout, 46);
            h.feed(&file, "t").unwrap();
            h.finish("t").unwrap()
        };
        assert_eq!(whole.header_xxh3, xxh3_64(&file[..10]));
        assert_eq!(whole.lists[0].xxh3, xxh3_64(&file[10..34]));
        assert_eq!(
            whole.lists[1],
            ManifestList {
                offset: 34,
                len: 0,
                xxh3: xxh3_64(&[])
            }
        );
        assert_eq!(whole.lists[2].xxh3, xxh3_64(&file[34..46]));
        assert_eq!(whole.lists[3].offset, 46);
        for size in [1, 3, 7, 10, 11, 45] {
            let mut h = SectionHasher::new(&layout, 46);
            for chunk in file.chunks(size) {
                h.feed(chunk, "t").unwrap();
            }
            assert_eq!(h.finish("t").unwrap(), whole, "chunks of {size}");
        }
    }

    #[test]
    fn a_stream_of_the_wrong_length_is_an_error() {
        let layout = ListRanges::new(&[1], 4, 10, 22, "t").unwrap();
        let mut h = SectionHasher::new(&layout, 22);
        h.feed(&[0; 20], "t").unwrap();
        assert!(h.feed(&[0; 3], "t").is_err());
        let err = h.finish("t").unwrap_err();
        assert!(err.to_string().contains("20 of 22"), "{err}");
    }

    #[test]
    fn sidecar_sits_next_to_the_index() {
        let path = Manifest::sidecar_path(&Path::from("a/b/index.faiss"));
        assert_eq!(path.as_ref(), "a/b/index.faiss.ivfmanifest");
        assert_eq!(Manifest::sidecar_uri("s3://b/i.faiss"), "s3://b/i.faiss.ivfmanifest");
    }
}
