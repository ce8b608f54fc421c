//! One write log record: the changes one commit made, as the immutable
//! object `_log/<position>.wal` holds them (ivflake's framing: magic,
//! version, body, xxh3 trailer). Upserted vectors are stored twice: as the
//! codes their base's quantizer and codec gave them (what a search scans)
//! and raw (what re-encoding after a retrain, and a trained compaction,
//! read). Deleted and upserted ids are disjoint: a record is the last state
//! of each id its commit touched.
//!
//! ```text
//! codec name (u32 length, UTF-8) | d u64 | code_size u64 | n u64 | m u64 |
//! ids i64×n | lists i64×n | deletes i64×m | codes u8×(n·code_size) | vectors f32×(n·d) |
//! attributes u64 length | attributes (an Arrow IPC stream of n rows, or nothing)
//! ```

use arrow_array::RecordBatch;
use bytes::Bytes;

use crate::attributes::rows;
use crate::error::Result as IvResult;
use crate::framing::Framing;

const FRAMING: Framing = Framing::new(b"IVFKWAL\0", 2);

/// Most ids one record holds (upserts and deletes): what one commit may
/// carry, so decoding a hostile record allocates within bounds.
pub(crate) const MAX_RECORD_IDS: u64 = 1 << 24;

/// The changes of one commit.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Record {
    /// The base whose quantizer and codec encoded `codes`
    /// ([`super::version::Version::codec`]).
    pub codec: String,
    pub d: usize,
    pub code_size: usize,
    pub ids: Vec<i64>,
    /// Each upserted vector's list.
    pub lists: Vec<i64>,
    pub deletes: Vec<i64>,
    pub codes: Vec<u8>,
    pub vectors: Vec<f32>,
    /// The upserts' attributes, row for row; `None` when none had any.
    pub attributes: Option<RecordBatch>,
}

impl Record {
    pub fn encode(&self) -> IvResult<Bytes> {
        let attributes = match &self.attributes {
            Some(batch) => rows::to_ipc(batch)?,
            None => Vec::new(),
        };
        let mut body = Vec::with_capacity(
            48 + self.codec.len()
                + self.ids.len() * 16
                + self.deletes.len() * 8
                + self.codes.len()
                + self.vectors.len() * 4,
        );
        body.extend((self.codec.len() as u32).to_le_bytes());
        body.extend(self.codec.as_bytes());
        for n in [self.d, self.code_size, self.ids.len(), self.deletes.len()] {
            body.extend((n as u64).to_le_bytes());
        }
        for part in [&self.ids, &self.lists, &self.deletes] {
            body.extend(part.iter().flat_map(|v| v.to_le_bytes()));
        }
        body.extend_from_slice(&self.codes);
        body.extend(self.vectors.iter().flat_map(|v| v.to_le_bytes()));
        body.extend((attributes.len() as u64).to_le_bytes());
        body.extend_from_slice(&attributes);
        Ok(Bytes::from(FRAMING.encode(&body)))
    }

    /// Reads a record, every count checked against its length before any
    /// allocation; `d` and `code_size` must be the index's.
    pub fn decode(raw: &[u8], d: usize, code_size: usize) -> Result<Self, String> {
        let body = FRAMING
            .decode(raw)
            .map_err(|e| format!("not a write log record: {e}"))?;
        let mut r = Reader { bytes: &raw[body] };
        let codec_len = u32::from_le_bytes(r.take(4)?.try_into().unwrap_or_default()) as usize;
        let codec = std::str::from_utf8(r.take(codec_len)?)
            .map_err(|_| "its codec name is not UTF-8".to_string())?
            .to_string();
        let (rd, rcs, n, m) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        if rd != d as u64 || rcs != code_size as u64 {
            return Err(format!(
                "written for d = {rd} and {rcs}-byte codes, the index has d = {d} and {code_size}-byte codes"
            ));
        }
        if n.saturating_add(m) > MAX_RECORD_IDS {
            return Err(format!(
                "{n} upserts and {m} deletes, over the {MAX_RECORD_IDS} a record holds"
            ));
        }
        let (n, m) = (n as usize, m as usize);
        let want = (n * 16 + m * 8 + 8)
            .checked_add(n.checked_mul(code_size).ok_or("codes overflow")?)
            .and_then(|b| b.checked_add(n.checked_mul(d)?.checked_mul(4)?))
            .ok_or("sizes overflow")?;
        if want > r.bytes.len() {
            return Err(format!("its counts need {want} bytes, it holds {}", r.bytes.len()));
        }
        let ids = r.i64s(n)?;
        let lists = r.i64s(n)?;
        let deletes = r.i64s(m)?;
        let codes = r.take(n * code_size)?.to_vec();
        let vectors: Vec<f32> = r
            .take(n * d * 4)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let attributes_len = r.u64()?;
        if attributes_len != r.bytes.len() as u64 {
            return Err(format!(
                "{attributes_len} bytes of attributes announced, {} left",
                r.bytes.len()
            ));
        }
        let attributes = match attributes_len {
            0 => None,
            _ => Some(rows::from_ipc(r.bytes, n)?),
        };
        Ok(Self {
            codec,
            d,
            code_size,
            ids,
            lists,
            deletes,
            codes,
            vectors,
            attributes,
        })
    }

    /// Where the raw vectors start in the record's object: vector `i` is
    /// the `d · 4` bytes from here plus `i · d · 4` (a range read for `get`).
    pub fn vectors_offset(&self) -> u64 {
        let head = crate::framing::HEADER_LEN + 4 + self.codec.len() + 32;
        (head + self.ids.len() * 16 + self.deletes.len() * 8 + self.codes.len()) as u64
    }

    pub fn code(&self, i: usize) -> &[u8] {
        &self.codes[i * self.code_size..(i + 1) * self.code_size]
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.bytes.len() {
            return Err(format!("truncated: {n} bytes wanted, {} left", self.bytes.len()));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }

    fn i64s(&mut self, n: usize) -> Result<Vec<i64>, String> {
        Ok(self
            .take(n * 8)?
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            codec: "bases/abc.faiss".into(),
            d: 2,
            code_size: 3,
            ids: vec![7, -1],
            lists: vec![0, 5],
            deletes: vec![9],
            codes: vec![1, 2, 3, 4, 5, 6],
            vectors: vec![0.5, 1.0, -2.0, 3.0],
            attributes: Some(
                RecordBatch::try_from_iter([(
                    "tag",
                    std::sync::Arc::new(arrow_array::StringArray::from(vec![Some("a"), None])) as arrow_array::ArrayRef,
                )])
                .unwrap(),
            ),
        }
    }

    #[test]
    fn round_trips() {
        let r = sample();
        let raw = r.encode().unwrap();
        let at = r.vectors_offset() as usize;
        assert_eq!(
            &raw[at..at + 4],
            &0.5f32.to_le_bytes(),
            "the first vector's first value"
        );
        assert_eq!(Record::decode(&r.encode().unwrap(), 2, 3).unwrap(), r);
        let plain = Record { attributes: None, ..r };
        assert_eq!(Record::decode(&plain.encode().unwrap(), 2, 3).unwrap(), plain);
    }

    #[test]
    fn refuses_damage_and_other_shapes() {
        let raw = sample().encode().unwrap();
        assert!(Record::decode(&raw, 4, 3).unwrap_err().contains("d = 2"));
        for cut in [0, 10, raw.len() - 1] {
            assert!(Record::decode(&raw[..cut], 2, 3).is_err(), "cut at {cut}");
        }
        let mut flipped = raw.to_vec();
        flipped[30] ^= 1;
        assert!(Record::decode(&flipped, 2, 3).unwrap_err().contains("checksum"));
    }
}
