//! Making an [`Index`] from a file's bytes: the header parsed lazily from a
//! prefix (and segments past the lists, for wrapped indexes) as ivflake
//! opens files, or a whole file read as `faiss.read_index` reads it; and
//! the [`IndexInfo`] the shim reports, typed.

use crate::error::{FaissError, FaissErrorKind, Result};
use crate::{ffi, IdMapInfo, Index, IndexInfo, IvfKind, ListFormat, Metric, OnDiskInfo, RefineInfo};

/// The outcome of parsing a header from a prefix of the file.
pub enum HeaderProbe {
    Opened(Index),
    /// The prefix ended inside the header; it needs at least this many bytes.
    NeedBytes(u64),
    /// The parse needs these bytes past the prefix (the parts of a wrapped
    /// index after its lists): fetch at least them and parse again.
    NeedRange(std::ops::Range<u64>),
}

/// Parses the header of an index file from `prefix`, its first bytes.
///
/// `alloc_cap` bounds any single C++ allocation while parsing, so a corrupt
/// length field fails instead of exhausting memory.
pub fn open_header(prefix: &[u8], file_len: u64, alloc_cap: usize) -> Result<HeaderProbe> {
    open_header_parts(prefix, &[], file_len, alloc_cap)
}

/// [`open_header`] with pieces of the file past the prefix, as
/// `(offset, bytes)`: what earlier [`HeaderProbe::NeedRange`]s asked for.
pub fn open_header_parts(
    prefix: &[u8],
    segments: &[(u64, &[u8])],
    file_len: u64,
    alloc_cap: usize,
) -> Result<HeaderProbe> {
    let offsets: Vec<u64> = segments
        .iter()
        .flat_map(|(offset, bytes)| [*offset, bytes.len() as u64])
        .collect();
    let joined: Vec<u8> = segments.iter().flat_map(|(_, bytes)| bytes.iter().copied()).collect();
    let (mut start, mut end) = (0u64, 0u64);
    let ptr = ffi::open_header(prefix, &joined, &offsets, file_len, alloc_cap, &mut start, &mut end)?;
    if ptr.is_null() {
        if start <= prefix.len() as u64 {
            return Ok(HeaderProbe::NeedBytes(end));
        }
        return Ok(HeaderProbe::NeedRange(start..end));
    }
    Ok(HeaderProbe::Opened(Index::wrap(ptr)?))
}

/// Reads a whole index file, lists included, as `faiss.read_index` would.
pub fn read_index(bytes: &[u8]) -> Result<Index> {
    Index::wrap(ffi::read_index_bytes(bytes)?)
}

impl Index {
    pub(crate) fn wrap(inner: cxx::UniquePtr<ffi::IvfIndex>) -> Result<Self> {
        let raw = ffi::info(&inner)?;
        let list_format = match raw.list_format {
            ffi::ListFormat::Blocks => ListFormat::Blocks {
                n_per_block: raw.n_per_block,
                block_size: raw.block_size,
            },
            _ => ListFormat::Array {
                code_size: raw.code_size,
            },
        };
        if let ListFormat::Blocks { n_per_block: 0, .. } = list_format {
            return Err(FaissError::new(
                FaissErrorKind::Corrupt,
                "block lists of 0 vectors a block",
            ));
        }
        let info = IndexInfo {
            type_name: raw.type_name,
            ivf_kind: IvfKind::from_ffi(raw.ivf_kind),
            d: raw.d,
            ivf_d: raw.ivf_d,
            metric: Metric::from_ffi(raw.metric)?,
            ntotal: raw.ntotal,
            nlist: raw.nlist,
            code_size: raw.code_size,
            default_nprobe: raw.default_nprobe,
            has_transform: raw.has_transform,
            list_data_offset: raw.list_data_offset,
            list_data_end: (raw.list_data_end > 0).then_some(raw.list_data_end),
            list_format,
            refine: (raw.k_factor > 0.0).then_some(RefineInfo {
                k_factor: raw.k_factor,
                code_size: raw.refine_code_size,
                codes_offset: raw.refine_codes_offset,
            }),
            id_map: raw.id_map.then_some(IdMapInfo {
                offset: raw.id_map_offset,
                map2: raw.id_map2,
            }),
            on_disk: None,
        };
        let mut info = info;
        if raw.on_disk {
            info.on_disk = Some(OnDiskInfo {
                filename: ffi::on_disk_filename(&inner)?,
                data_len: raw.on_disk_totsize,
            });
        }
        Ok(Self { inner, info })
    }
}
