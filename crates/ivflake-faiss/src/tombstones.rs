//! Tombstones as a scan reads them: sorted ids and a bloom filter at their
//! low bits, built once per set (the scan's `SortedIds` selector in
//! `cpp/scan.cc` reads both and builds nothing).

/// The bloom filter of sorted tombstones the scan checks before its binary
/// search: one bit per id, at the id's low bits (as Faiss's
/// `IDSelectorBatch` does), in about 16 bits an id, so most entries that
/// are not hidden cost one load.
pub fn hidden_bloom(ids: &[i64]) -> Vec<u64> {
    if ids.is_empty() {
        return Vec::new();
    }
    let bits = (ids.len() * 16).next_power_of_two().max(64);
    let mask = bits as u64 - 1;
    let mut words = vec![0u64; bits / 64];
    for &id in ids {
        let b = id as u64 & mask;
        words[(b >> 6) as usize] |= 1 << (b & 63);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_sets_its_bit() {
        let ids: Vec<i64> = (0..1000).map(|i| i * 7919 - 3).collect();
        let bloom = hidden_bloom(&ids);
        assert!(bloom.len().is_power_of_two());
        let mask = bloom.len() as u64 * 64 - 1;
        for id in ids {
            let b = id as u64 & mask;
            assert_eq!(bloom[(b >> 6) as usize] >> (b & 63) & 1, 1, "{id}");
        }
        assert!(hidden_bloom(&[]).is_empty());
    }
}
