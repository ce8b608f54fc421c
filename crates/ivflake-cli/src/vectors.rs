//! Reading and writing float32 vector files: NumPy `.npy` (parsed here, no
//! NumPy needed) and the `.fvecs` format of the classic ANN benchmarks.
//!
//! Readers check a file's declared shape against its length *before*
//! allocating, so a corrupt or hostile header cannot ask for more memory
//! than the file could hold.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

/// `n` vectors of dimension `d`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Vectors {
    pub n: usize,
    pub d: usize,
    pub data: Vec<f32>,
}

impl Vectors {
    pub fn new(n: usize, d: usize, data: Vec<f32>) -> Result<Self> {
        ensure!(d > 0, "vectors must have at least one dimension");
        ensure!(
            n.checked_mul(d) == Some(data.len()),
            "{} floats are not {n} vectors of dimension {d}",
            data.len()
        );
        Ok(Self { n, d, data })
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.d..(i + 1) * self.d]
    }

    /// The first vector holding a NaN or infinity, as `(vector, dimension)`.
    pub fn first_non_finite(&self) -> Option<(usize, usize)> {
        self.data
            .iter()
            .position(|v| !v.is_finite())
            .map(|p| (p / self.d, p % self.d))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Npy,
    Fvecs,
}

const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";
/// NumPy itself refuses headers above 10 000 bytes by default; allow some slack.
const MAX_NPY_HEADER: usize = 64 * 1024;
/// Floats converted per read while loading data.
const READ_CHUNK_FLOATS: usize = 256 * 1024;

/// Reads a `.npy` or `.fvecs` file, chosen by extension (or, failing that, by
/// the `.npy` magic bytes). Rejects files holding no vectors or non-finite values.
pub fn read_vectors(path: &Path) -> Result<Vectors> {
    let read = || -> Result<Vectors> {
        let file = File::open(path).context("cannot open the file")?;
        let len = file.metadata().context("cannot stat the file")?.len();
        let format = detect_format(path, &file)?;
        let reader = BufReader::new(file);
        let vectors = match format {
            Format::Npy => read_npy(reader, len)?,
            Format::Fvecs => read_fvecs(reader, len)?,
        };
        if let Some((i, j)) = vectors.first_non_finite() {
            bail!("vector {i} has a non-finite value (NaN or infinity) at dimension {j}");
        }
        Ok(vectors)
    };
    read().with_context(|| format!("reading vectors from {}", path.display()))
}

fn detect_format(path: &Path, file: &File) -> Result<Format> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("npy") => return Ok(Format::Npy),
        Some("fvecs") => return Ok(Format::Fvecs),
        _ => {}
    }
    let mut magic = [0u8; 6];
    let mut reader = file;
    let sniffed = reader.read_exact(&mut magic).is_ok() && &magic == NPY_MAGIC;
    // Reopened by the caller's BufReader from the current position, so rewind.
    std::io::Seek::rewind(&mut reader).context("cannot rewind the file")?;
    if sniffed {
        return Ok(Format::Npy);
    }
    bail!("unknown vector file format: name it .npy (NumPy float32) or .fvecs")
}

/// Parses a NumPy `.npy` file of `len` bytes holding a C-order little-endian
/// float32 array of shape `(n, d)`, or `(d,)` for a single vector.
pub fn read_npy<R: Read>(mut r: R, len: u64) -> Result<Vectors> {
    let mut preamble = [0u8; 8];
    r.read_exact(&mut preamble)
        .map_err(|_| anyhow::anyhow!("not a .npy file: only {len} bytes, too short for the .npy magic"))?;
    if &preamble[..6] != NPY_MAGIC {
        bail!("not a .npy file: it does not start with the \\x93NUMPY magic");
    }
    let (major, minor) = (preamble[6], preamble[7]);
    let header_len = match (major, minor) {
        (1, 0) => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).context("truncated .npy preamble")?;
            u16::from_le_bytes(b) as usize
        }
        (2, 0) | (3, 0) => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).context("truncated .npy preamble")?;
            usize::try_from(u32::from_le_bytes(b)).unwrap_or(usize::MAX)
        }
        _ => bail!("unsupported .npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0)"),
    };
    let preamble_len: u64 = if major == 1 { 10 } else { 12 };
    if header_len > MAX_NPY_HEADER {
        bail!("the .npy header claims {header_len} bytes, more than the {MAX_NPY_HEADER} allowed");
    }
    let data_offset = preamble_len + header_len as u64;
    if data_offset > len {
        bail!("the .npy header claims {header_len} bytes but the file has only {len}");
    }
    let mut raw = vec![0u8; header_len];
    r.read_exact(&mut raw).context("truncated .npy header")?;
    let text: String = if major == 3 {
        String::from_utf8(raw).context(".npy header is not valid UTF-8")?
    } else {
        // Versions 1.0 and 2.0 are latin-1: every byte is one character.
        raw.iter().map(|&b| b as char).collect()
    };
    let header = NpyHeader::parse(&text)?;
    let (n, d) = header.vectors_shape()?;
    let need = (n as u64)
        .checked_mul(d as u64)
        .and_then(|f| f.checked_mul(4))
        .ok_or_else(|| anyhow::anyhow!("declared shape {} overflows", header.shape_text()))?;
    let have = len - data_offset;
    if need != have {
        bail!(
            "declared shape {} needs {need} bytes of float32 data but the file has {have} after its header",
            header.shape_text()
        );
    }
    let data = read_f32s(&mut r, n * d)?;
    Vectors::new(n, d, data)
}

/// Reads exactly `count` little-endian f32s in bounded chunks.
fn read_f32s<R: Read>(r: &mut R, count: usize) -> Result<Vec<f32>> {
    let mut data = Vec::with_capacity(count);
    let mut buf = vec![0u8; READ_CHUNK_FLOATS.min(count) * 4];
    let mut left = count;
    while left > 0 {
        let take = left.min(READ_CHUNK_FLOATS);
        let bytes = &mut buf[..take * 4];
        r.read_exact(bytes)
            .context("the file ended early (was it truncated while being read?)")?;
        data.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        left -= take;
    }
    Ok(data)
}

/// The three keys of a `.npy` header dictionary.
#[derive(Debug)]
struct NpyHeader {
    descr: PyValue,
    fortran_order: PyValue,
    shape: PyValue,
}

impl NpyHeader {
    fn parse(text: &str) -> Result<Self> {
        let value = PyParser::new(text)
            .parse_all()
            .with_context(|| format!("cannot parse the .npy header {:?}", text.trim_end()))?;
        let PyValue::Dict(entries) = value else {
            bail!("the .npy header is not a dictionary: {:?}", text.trim_end());
        };
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        for (key, value) in entries {
            let slot = match key.as_str() {
                "descr" => &mut descr,
                "fortran_order" => &mut fortran_order,
                "shape" => &mut shape,
                other => bail!("unexpected key {other:?} in the .npy header"),
            };
            if slot.replace(value).is_some() {
                bail!("key {key:?} appears twice in the .npy header");
            }
        }
        let missing = |k: &str| anyhow::anyhow!("the .npy header has no {k:?} key");
        Ok(Self {
            descr: descr.ok_or_else(|| missing("descr"))?,
            fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
            shape: shape.ok_or_else(|| missing("shape"))?,
        })
    }

    fn shape_text(&self) -> String {
        self.shape.to_string()
    }

    /// Checks dtype and order and returns `(n, d)`.
    fn vectors_shape(&self) -> Result<(usize, usize)> {
        match &self.descr {
            PyValue::Str(s) if s == "<f4" => {}
            PyValue::Str(s) if s == ">f4" => {
                bail!("the array is big-endian float32 ('>f4'); save it with arr.astype('<f4')")
            }
            PyValue::Str(s) => bail!(
                "unsupported dtype '{s}': ivflake reads little-endian float32 ('<f4'); \
                 save it with np.save(path, arr.astype('<f4'))"
            ),
            other => bail!("unsupported structured dtype {other}: ivflake reads plain float32 arrays ('<f4')"),
        }
        match &self.fortran_order {
            PyValue::Bool(false) => {}
            PyValue::Bool(true) => {
                bail!("the array is in Fortran (column-major) order; save np.ascontiguousarray(arr) instead")
            }
            other => bail!("'fortran_order' must be True or False, not {other}"),
        }
        let PyValue::Tuple(dims) = &self.shape else {
            bail!("'shape' must be a tuple, not {}", self.shape);
        };
        let dims: Vec<u64> = dims
            .iter()
            .map(|v| match v {
                PyValue::Int(i) => Ok(*i),
                other => bail!("'shape' holds {other}, not an integer"),
            })
            .collect::<Result<_>>()?;
        let to_usize = |v: u64| usize::try_from(v).context("shape too large for this platform");
        let (n, d) = match dims.as_slice() {
            [d] => (1, to_usize(*d)?),
            [n, d] => (to_usize(*n)?, to_usize(*d)?),
            _ => bail!(
                "the array has shape {} ({} dimensions); expected (n, d) vectors or a single (d,) vector",
                self.shape,
                dims.len()
            ),
        };
        ensure!(
            d > 0,
            "the array has shape {}: vectors with zero dimensions",
            self.shape
        );
        ensure!(n > 0, "the array has shape {}: it holds no vectors", self.shape);
        Ok((n, d))
    }
}

/// The subset of Python literals that `.npy` headers use.
#[derive(Debug, Clone, PartialEq)]
enum PyValue {
    Str(String),
    Int(u64),
    Bool(bool),
    None,
    Tuple(Vec<PyValue>),
    List(Vec<PyValue>),
    Dict(Vec<(String, PyValue)>),
}

impl std::fmt::Display for PyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seq = |f: &mut std::fmt::Formatter<'_>, items: &[PyValue]| -> std::fmt::Result {
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{v}")?;
            }
            Ok(())
        };
        match self {
            PyValue::Str(s) => write!(f, "'{s}'"),
            PyValue::Int(i) => write!(f, "{i}"),
            PyValue::Bool(true) => f.write_str("True"),
            PyValue::Bool(false) => f.write_str("False"),
            PyValue::None => f.write_str("None"),
            PyValue::Tuple(items) => {
                f.write_str("(")?;
                seq(f, items)?;
                f.write_str(if items.len() == 1 { ",)" } else { ")" })
            }
            PyValue::List(items) => {
                f.write_str("[")?;
                seq(f, items)?;
                f.write_str("]")
            }
            PyValue::Dict(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "'{k}': {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// A recursive-descent parser for Python literal syntax, with a depth limit.
struct PyParser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> PyParser<'a> {
    const MAX_DEPTH: usize = 16;

    fn new(text: &'a str) -> Self {
        Self {
            s: text.as_bytes(),
            pos: 0,
            depth: 0,
        }
    }

    fn parse_all(mut self) -> Result<PyValue> {
        let v = self.value()?;
        self.skip_ws();
        ensure!(self.pos == self.s.len(), "unexpected text at byte {}", self.pos);
        Ok(v)
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        match self.peek() {
            Some(got) if got == c => {
                self.pos += 1;
                Ok(())
            }
            Some(got) => bail!("expected {:?} at byte {}, found {:?}", c as char, self.pos, got as char),
            None => bail!("expected {:?} at the end of the header", c as char),
        }
    }

    fn value(&mut self) -> Result<PyValue> {
        self.depth += 1;
        ensure!(self.depth <= Self::MAX_DEPTH, "header nests too deeply");
        let v = match self.peek() {
            Some(b'{') => self.dict(),
            Some(b'(') => self.seq(b'(', b')').map(PyValue::Tuple),
            Some(b'[') => self.seq(b'[', b']').map(PyValue::List),
            Some(b'\'' | b'"') => self.string().map(PyValue::Str),
            Some(c) if c.is_ascii_digit() => self.int(),
            Some(c) if c.is_ascii_alphabetic() => self.word(),
            Some(c) => bail!("unexpected {:?} at byte {}", c as char, self.pos),
            None => bail!("header ends where a value was expected"),
        };
        self.depth -= 1;
        v
    }

    fn dict(&mut self) -> Result<PyValue> {
        self.expect(b'{')?;
        let mut entries = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(PyValue::Dict(entries));
            }
            let key = match self.peek() {
                Some(b'\'' | b'"') => self.string()?,
                _ => bail!("dictionary key at byte {} is not a string", self.pos),
            };
            self.expect(b':')?;
            let value = self.value()?;
            entries.push((key, value));
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => bail!("expected ',' or '}}' at byte {}", self.pos),
            }
        }
    }

    fn seq(&mut self, open: u8, close: u8) -> Result<Vec<PyValue>> {
        self.expect(open)?;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value()?);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => bail!("expected ',' or {:?} at byte {}", close as char, self.pos),
            }
        }
    }

    fn string(&mut self) -> Result<String> {
        let quote = self.s[self.pos];
        self.pos += 1;
        let start = self.pos;
        while self.pos < self.s.len() && self.s[self.pos] != quote {
            ensure!(self.s[self.pos] != b'\\', "escapes in header strings are not supported");
            self.pos += 1;
        }
        ensure!(self.pos < self.s.len(), "unterminated string in header");
        let s = std::str::from_utf8(&self.s[start..self.pos]).context("header string is not UTF-8")?;
        self.pos += 1;
        Ok(s.to_string())
    }

    fn int(&mut self) -> Result<PyValue> {
        let start = self.pos;
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        let digits = std::str::from_utf8(&self.s[start..self.pos]).context("header integer is not UTF-8")?;
        let v: u64 = digits
            .parse()
            .with_context(|| format!("integer {digits} in the header is too large"))?;
        // Python 2 era files write longs as `10L`.
        if self.s.get(self.pos) == Some(&b'L') {
            self.pos += 1;
        }
        Ok(PyValue::Int(v))
    }

    fn word(&mut self) -> Result<PyValue> {
        let start = self.pos;
        while self.pos < self.s.len() && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'_') {
            self.pos += 1;
        }
        match &self.s[start..self.pos] {
            b"True" => Ok(PyValue::Bool(true)),
            b"False" => Ok(PyValue::Bool(false)),
            b"None" => Ok(PyValue::None),
            other => bail!("unexpected word {:?} in the header", String::from_utf8_lossy(other)),
        }
    }
}

/// Parses an `.fvecs` file of `len` bytes: per vector, a little-endian i32
/// dimension then that many f32s. Every dimension must match the first.
pub fn read_fvecs<R: Read>(mut r: R, len: u64) -> Result<Vectors> {
    ensure!(len > 0, "the file is empty: it holds no vectors");
    let mut dim = [0u8; 4];
    r.read_exact(&mut dim)
        .map_err(|_| anyhow::anyhow!("the file has only {len} bytes, too short for an .fvecs record"))?;
    let d = i32::from_le_bytes(dim);
    ensure!(
        d > 0,
        "the first vector declares dimension {d}; .fvecs dimensions must be positive"
    );
    let d = d as usize;
    let record = (d as u64 + 1) * 4;
    ensure!(
        len.is_multiple_of(record),
        "the file's {len} bytes are not a whole number of {d}-dimensional .fvecs records of {record} bytes \
         (truncated, or vectors of mixed dimensions)"
    );
    let n = usize::try_from(len / record).context("file too large for this platform")?;
    let mut data = Vec::with_capacity(n * d);
    let mut buf = vec![0u8; d * 4];
    for i in 0..n {
        if i > 0 {
            r.read_exact(&mut dim).context("the file ended early")?;
            let di = i32::from_le_bytes(dim);
            ensure!(di == d as i32, "vector {i} has dimension {di} but vector 0 has {d}");
        }
        r.read_exact(&mut buf).context("the file ended early")?;
        data.extend(
            buf.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
    Vectors::new(n, d, data)
}

/// Serializes `v` as a version 1.0 `.npy` file of shape `(n, d)`.
pub fn npy_bytes_into<W: Write>(v: &Vectors, mut w: W) -> std::io::Result<()> {
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        v.n, v.d
    );
    // Magic, version, u16 length, dict, spaces, newline: padded to 64 bytes as NumPy does.
    let unpadded = 10 + dict.len() + 1;
    let header_len = dict.len() + 1 + (64 - unpadded % 64) % 64;
    let header_len_u16 = u16::try_from(header_len)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "npy header too long"))?;
    w.write_all(NPY_MAGIC)?;
    w.write_all(&[1, 0])?;
    w.write_all(&header_len_u16.to_le_bytes())?;
    w.write_all(dict.as_bytes())?;
    w.write_all(&vec![b' '; header_len - dict.len() - 1])?;
    w.write_all(b"\n")?;
    for x in &v.data {
        w.write_all(&x.to_le_bytes())?;
    }
    w.flush()
}

/// Serializes `v` as `.fvecs`.
pub fn fvecs_bytes_into<W: Write>(v: &Vectors, mut w: W) -> std::io::Result<()> {
    let d = i32::try_from(v.d)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "dimension too large for .fvecs"))?;
    for i in 0..v.n {
        w.write_all(&d.to_le_bytes())?;
        for x in v.row(i) {
            w.write_all(&x.to_le_bytes())?;
        }
    }
    w.flush()
}

/// Writes `v` to `path` as `.npy`, or `.fvecs` when the name says so.
pub fn write_vectors(path: &Path, v: &Vectors) -> Result<()> {
    let write = || -> Result<()> {
        let file = BufWriter::new(File::create(path).context("cannot create the file")?);
        let fvecs = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("fvecs"));
        if fvecs {
            fvecs_bytes_into(v, file)?;
        } else {
            npy_bytes_into(v, file)?;
        }
        Ok(())
    };
    write().with_context(|| format!("writing vectors to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn sample(n: usize, d: usize) -> Vectors {
        let data = (0..n * d).map(|i| i as f32 * 0.5 - 3.0).collect();
        Vectors::new(n, d, data).unwrap()
    }

    fn npy(v: &Vectors) -> Vec<u8> {
        let mut out = Vec::new();
        npy_bytes_into(v, &mut out).unwrap();
        out
    }

    fn parse_npy(bytes: &[u8]) -> Result<Vectors> {
        read_npy(Cursor::new(bytes), bytes.len() as u64)
    }

    /// A .npy file with a hand-written header dict and `data_len` zero bytes.
    fn npy_with_header(version: (u8, u8), dict: &str, data_len: usize) -> Vec<u8> {
        let mut out = NPY_MAGIC.to_vec();
        out.extend([version.0, version.1]);
        let header = format!("{dict}\n");
        if version.0 == 1 {
            out.extend((header.len() as u16).to_le_bytes());
        } else {
            out.extend((header.len() as u32).to_le_bytes());
        }
        out.extend(header.as_bytes());
        out.extend(vec![0u8; data_len]);
        out
    }

    fn err_of(r: Result<Vectors>) -> String {
        format!("{:#}", r.unwrap_err())
    }

    #[test]
    fn npy_round_trip() {
        for (n, d) in [(1, 1), (3, 4), (17, 64), (1000, 3)] {
            let v = sample(n, d);
            let bytes = npy(&v);
            assert_eq!((bytes.len() - n * d * 4) % 64, 0, "header padded to 64 bytes");
            assert_eq!(parse_npy(&bytes).unwrap(), v);
        }
    }

    #[test]
    fn fvecs_round_trip() {
        let v = sample(5, 7);
        let mut bytes = Vec::new();
        fvecs_bytes_into(&v, &mut bytes).unwrap();
        assert_eq!(bytes.len(), 5 * (7 + 1) * 4);
        assert_eq!(read_fvecs(Cursor::new(&bytes), bytes.len() as u64).unwrap(), v);
    }

    #[test]
    fn file_round_trip_and_detection() {
        let dir = std::env::temp_dir().join(format!("ivflake-cli-vectors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let v = sample(9, 5);
        for name in ["a.npy", "a.fvecs"] {
            let path = dir.join(name);
            write_vectors(&path, &v).unwrap();
            assert_eq!(read_vectors(&path).unwrap(), v, "{name}");
        }
        // An .npy file under another name is recognized by its magic.
        std::fs::rename(dir.join("a.npy"), dir.join("a.bin")).unwrap();
        assert_eq!(read_vectors(&dir.join("a.bin")).unwrap(), v);
        std::fs::write(dir.join("b.bin"), b"hello world").unwrap();
        assert!(err_of(read_vectors(&dir.join("b.bin"))).contains("unknown vector file format"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn npy_accepts_versions_spacing_and_single_vectors() {
        let one = npy_with_header((1, 0), "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 12);
        let v = parse_npy(&one).unwrap();
        assert_eq!((v.n, v.d), (1, 3));
        let v2 = npy_with_header(
            (2, 0),
            "{\"shape\":(2,2),\"fortran_order\":False,\"descr\":\"<f4\"}",
            16,
        );
        assert_eq!(parse_npy(&v2).unwrap().n, 2);
        let v3 = npy_with_header((3, 0), "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 1L)}", 8);
        assert_eq!(parse_npy(&v3).unwrap().d, 1);
    }

    #[test]
    fn npy_rejects_bad_headers() {
        let cases: &[(&[u8], &str)] = &[(b"PK\x03\x04 not numpy at all", "magic"), (b"\x93NUM", "too short")];
        for (bytes, want) in cases {
            let e = err_of(parse_npy(bytes));
            assert!(e.contains(want), "{e}");
        }
        let dict_cases = [
            ("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", "'<f8'"),
            (
                "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }",
                "big-endian",
            ),
            (
                "{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (2, 2), }",
                "structured",
            ),
            ("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", "Fortran"),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 1), }",
                "3 dimensions",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
                "0 dimensions",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4), }",
                "no vectors",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 0), }",
                "zero dimensions",
            ),
            ("{'descr': '<f4', 'fortran_order': False, }", "no \"shape\""),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'x': 1}",
                "unexpected key",
            ),
            (
                "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)}",
                "twice",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)",
                "cannot parse",
            ),
            ("[1, 2]", "not a dictionary"),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999, 2)}",
                "too large",
            ),
        ];
        for (dict, want) in dict_cases {
            let e = err_of(parse_npy(&npy_with_header((1, 0), dict, 16)));
            assert!(e.contains(want), "{dict}: {e}");
        }
        let mut v4 = npy(&sample(2, 2));
        v4[6] = 4;
        assert!(err_of(parse_npy(&v4)).contains("version 4.0"));
        // A header length past the end of the file.
        let mut long = npy(&sample(1, 1));
        long[8..10].copy_from_slice(&60000u16.to_le_bytes());
        assert!(err_of(parse_npy(&long)).contains("has only"));
        // A v2 header length above the limit is refused before allocating.
        let mut huge = npy_with_header((2, 0), "{}", 0);
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(err_of(parse_npy(&huge)).contains("more than"));
    }

    #[test]
    fn npy_rejects_shape_length_mismatch() {
        let v = sample(4, 3);
        let mut bytes = npy(&v);
        bytes.pop();
        assert!(err_of(parse_npy(&bytes)).contains("needs 48 bytes"), "truncated");
        let mut bytes = npy(&v);
        bytes.extend([0; 4]);
        assert!(err_of(parse_npy(&bytes)).contains("has 52"), "trailing data");
        // A shape whose byte count overflows u64 is refused, not allocated.
        let huge = npy_with_header(
            (1, 0),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 4), }",
            16,
        );
        let e = err_of(parse_npy(&huge));
        assert!(e.contains("overflows") || e.contains("too large"), "{e}");
        let big = npy_with_header(
            (1, 0),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000), }",
            16,
        );
        assert!(err_of(parse_npy(&big)).contains("needs 4000000000000 bytes"));
    }

    #[test]
    fn fvecs_rejects_bad_files() {
        let v = sample(3, 4);
        let mut bytes = Vec::new();
        fvecs_bytes_into(&v, &mut bytes).unwrap();
        let parse = |b: &[u8]| read_fvecs(Cursor::new(b), b.len() as u64);
        assert!(err_of(parse(&bytes[..bytes.len() - 4])).contains("not a whole number"));
        let mut mixed = bytes.clone();
        mixed[20..24].copy_from_slice(&5i32.to_le_bytes());
        assert!(err_of(parse(&mixed)).contains("vector 1 has dimension 5"));
        let mut negative = bytes.clone();
        negative[..4].copy_from_slice(&(-1i32).to_le_bytes());
        assert!(err_of(parse(&negative)).contains("must be positive"));
        assert!(err_of(parse(&[])).contains("empty"));
        assert!(err_of(parse(&[1, 0])).contains("too short"));
    }

    #[test]
    fn non_finite_values_are_found() {
        let mut v = sample(3, 4);
        assert_eq!(v.first_non_finite(), None);
        v.data[6] = f32::NAN;
        assert_eq!(v.first_non_finite(), Some((1, 2)));
    }
}
