//! A bundle's document ids, bit-packed: each id as its offset from the
//! smallest, in the width the largest offset needs, as tantivy stores a
//! fast field's integers (and with its `tantivy-bitpacker`). Ids are read
//! per hit, never unpacked whole; the bundle's tail, which every open
//! reads, shrinks from 8 bytes a document to about `log2(n)` bits.
//!
//! ```text
//! i64 LE smallest | u8 width | the offsets, packed
//! ```

use tantivy_bitpacker::{compute_num_bits, BitPacker, BitUnpacker};

/// Bytes before the packed offsets.
const HEAD: usize = 9;
/// `BitUnpacker` reads 8 bytes at a time, so widths 57–63 are not
/// allowed: such offsets take 64 bits.
const MAX_NARROW_WIDTH: u8 = 56;

#[derive(Debug)]
pub(crate) struct PackedIds {
    smallest: i64,
    unpacker: BitUnpacker,
    packed: Vec<u8>,
    len: usize,
}

impl PackedIds {
    pub(crate) fn encode(ids: &[i64]) -> Vec<u8> {
        let smallest = ids.iter().copied().min().unwrap_or(0);
        let largest = ids.iter().copied().max().unwrap_or(0);
        let width = match compute_num_bits(largest.wrapping_sub(smallest) as u64) {
            w if w > MAX_NARROW_WIDTH => 64,
            w => w,
        };
        let mut out = Vec::with_capacity(HEAD + (ids.len() * width as usize).div_ceil(8));
        out.extend_from_slice(&smallest.to_le_bytes());
        out.push(width);
        let mut packer = BitPacker::new();
        for &id in ids {
            // Writing to a Vec cannot fail.
            let _ = packer.write(id.wrapping_sub(smallest) as u64, width, &mut out);
        }
        let _ = packer.close(&mut out);
        out
    }

    /// The ids of `len` documents from `raw`, or why `raw` cannot be them.
    pub(crate) fn decode(raw: &[u8], len: u64) -> std::result::Result<Self, String> {
        let Some((head, packed)) = raw.split_first_chunk::<HEAD>() else {
            return Err(format!("{} bytes of ids, not even their {HEAD}-byte head", raw.len()));
        };
        let smallest = i64::from_le_bytes(head[..8].try_into().unwrap_or_default());
        let width = head[8];
        if width > MAX_NARROW_WIDTH && width != 64 {
            return Err(format!("ids {width} bits wide"));
        }
        let len = usize::try_from(len).map_err(|_| format!("{len} documents"))?;
        if u32::try_from(len).is_err() {
            return Err(format!("{len} documents, more than a tantivy segment holds"));
        }
        let expected = (len as u128 * width as u128).div_ceil(8);
        if packed.len() as u128 != expected {
            return Err(format!(
                "{} bytes of ids for {len} documents of {width} bits",
                packed.len()
            ));
        }
        Ok(Self {
            smallest,
            unpacker: BitUnpacker::new(width),
            packed: packed.to_vec(),
            len,
        })
    }

    /// The id of document `doc`, if there is one.
    pub(crate) fn get(&self, doc: u32) -> Option<i64> {
        ((doc as usize) < self.len).then(|| self.smallest.wrapping_add(self.unpacker.get(doc, &self.packed) as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_in_their_width() {
        let cases: Vec<Vec<i64>> = vec![
            vec![],
            vec![7],
            vec![5, 5, 5],
            (0..1000).rev().collect(),
            vec![-3, i64::MAX, 0, i64::MIN],
            vec![1 << 40, (1 << 40) + (1 << 57), 3],
            (0..777).map(|i| i * 1_000_003 - 50_000).collect(),
        ];
        for ids in cases {
            let raw = PackedIds::encode(&ids);
            let packed = PackedIds::decode(&raw, ids.len() as u64).unwrap();
            let back: Vec<i64> = (0..ids.len() as u32).map(|d| packed.get(d).unwrap()).collect();
            assert_eq!(back, ids);
            assert_eq!(packed.get(ids.len() as u32), None);
        }
        // 1M ids below 2^20: 20 bits each, not 64.
        let ids: Vec<i64> = (0..1_000_000).collect();
        assert_eq!(PackedIds::encode(&ids).len(), HEAD + 2_500_000);
    }

    #[test]
    fn malformed_ids_are_refused() {
        let raw = PackedIds::encode(&[1, 2, 3]);
        assert!(PackedIds::decode(&raw[..5], 3).is_err());
        // 2 bits each: 3 ids are one byte, as 4 are (the commit point and
        // the segment check the count); 5 need two, 0 none.
        assert!(PackedIds::decode(&raw, 5).is_err());
        assert!(PackedIds::decode(&raw, 0).is_err());
        let mut wide = raw.clone();
        wide[8] = 60;
        assert!(PackedIds::decode(&wide, 3).is_err());
        assert!(PackedIds::decode(&raw, u64::MAX).is_err());
    }
}
