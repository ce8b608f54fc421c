//! The one framing of ivflake's own binary files: the checksum sidecar, the
//! probe counts and the disk-cache entries.
//!
//! ```text
//! magic (8) | format version u32 | body | xxh3-64 of every byte before it (8)
//! ```
//!
//! All little-endian. The body's length is the frame's length minus the fixed
//! parts: each format checks its own body against it before allocating. This
//! module owns the magic, version and trailer checks and nothing of any body.

use std::ops::Range;

use xxhash_rust::xxh3::{xxh3_64, Xxh3Default};

/// Magic and version.
pub(crate) const HEADER_LEN: usize = 12;
/// The trailing xxh3.
pub(crate) const TRAILER_LEN: usize = 8;

/// Why bytes are not a frame of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Shorter than header and trailer together.
    Truncated { len: usize },
    /// Another file's magic.
    Magic([u8; 8]),
    /// A format version this build does not read.
    Version(u32),
    /// The trailer does not match the content.
    Checksum { stored: u64, computed: u64 },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated { len } => write!(
                f,
                "truncated: {len} bytes, shorter than the {}-byte minimum",
                HEADER_LEN + TRAILER_LEN
            ),
            FrameError::Magic(magic) => write!(f, "it starts with bytes {magic:02x?}"),
            FrameError::Version(v) => write!(f, "format version {v}"),
            FrameError::Checksum { stored, computed } => write!(
                f,
                "trailing checksum {stored:016x} does not match its content ({computed:016x})"
            ),
        }
    }
}

/// One kind of frame: its magic and the format version this build writes and reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Framing {
    pub magic: &'static [u8; 8],
    pub version: u32,
}

impl Framing {
    pub const fn new(magic: &'static [u8; 8], version: u32) -> Self {
        Self { magic, version }
    }

    pub fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(self.magic);
        h[8..].copy_from_slice(&self.version.to_le_bytes());
        h
    }

    /// The whole frame around `body`.
    pub fn encode(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TRAILER_LEN);
        out.extend_from_slice(&self.header());
        out.extend_from_slice(body);
        out.extend_from_slice(&xxh3_64(&out).to_le_bytes());
        out
    }

    /// The trailer of a frame whose body is `parts` in order, for writers that
    /// stream a large body instead of copying it into one buffer.
    pub fn trailer(&self, parts: &[&[u8]]) -> [u8; TRAILER_LEN] {
        let mut h = Xxh3Default::new();
        h.update(&self.header());
        for part in parts {
            h.update(part);
        }
        h.digest().to_le_bytes()
    }

    /// The body's range in `raw` once magic, version and trailer check out.
    pub fn decode(&self, raw: &[u8]) -> Result<Range<usize>, FrameError> {
        let body = self.body_range(raw)?;
        self.check_trailer(raw)?;
        Ok(body)
    }

    /// The body's range after checking only length, magic and version: for
    /// formats that check their own counts against the length first, so a
    /// damaged count is reported as such.
    pub fn body_range(&self, raw: &[u8]) -> Result<Range<usize>, FrameError> {
        let magic = raw.get(..8).and_then(|m| <[u8; 8]>::try_from(m).ok());
        match magic {
            Some(m) if &m != self.magic => return Err(FrameError::Magic(m)),
            _ if raw.len() < HEADER_LEN + TRAILER_LEN => return Err(FrameError::Truncated { len: raw.len() }),
            _ => {}
        }
        let version = u32::from_le_bytes(raw[8..12].try_into().unwrap_or_default());
        if version != self.version {
            return Err(FrameError::Version(version));
        }
        Ok(HEADER_LEN..raw.len() - TRAILER_LEN)
    }

    /// Whether the trailer matches everything before it.
    pub fn check_trailer(&self, raw: &[u8]) -> Result<(), FrameError> {
        let body_end = raw.len().saturating_sub(TRAILER_LEN);
        let stored = le_u64(raw, body_end).ok_or(FrameError::Truncated { len: raw.len() })?;
        let computed = xxh3_64(&raw[..body_end]);
        if stored != computed {
            return Err(FrameError::Checksum { stored, computed });
        }
        Ok(())
    }
}

/// The little-endian u64 at `at`, if the bytes are there.
pub(crate) fn le_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let end = at.checked_add(8)?;
    bytes.get(at..end)?.try_into().ok().map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Framing = Framing::new(b"IVFKTEST", 3);

    #[test]
    fn round_trip_and_streamed_trailer_agree() {
        let frame = F.encode(b"hello world");
        assert_eq!(&frame[F.decode(&frame).unwrap()], b"hello world");
        let mut streamed = F.header().to_vec();
        streamed.extend_from_slice(b"hello world");
        streamed.extend_from_slice(&F.trailer(&[b"hello ", b"world"]));
        assert_eq!(streamed, frame);
    }

    #[test]
    fn rejects_every_kind_of_damage() {
        let frame = F.encode(b"body");
        assert_eq!(F.decode(&frame[..5]), Err(FrameError::Truncated { len: 5 }));
        assert!(matches!(
            Framing::new(b"IVFKOTHR", 3).decode(&frame),
            Err(FrameError::Magic(_))
        ));
        assert_eq!(Framing::new(b"IVFKTEST", 4).decode(&frame), Err(FrameError::Version(3)));
        for at in 12..frame.len() {
            let mut bad = frame.clone();
            bad[at] ^= 1;
            assert!(matches!(F.decode(&bad), Err(FrameError::Checksum { .. })), "byte {at}");
        }
    }
}
