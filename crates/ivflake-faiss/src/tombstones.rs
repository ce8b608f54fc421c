//! Tombstones as a scan reads them: sorted ids and a bloom filter at their
//! low bits, built once per set (the scan's `SortedIds` selector in
//! `cpp/scan.cc` reads both and builds nothing).

/// The bloom filter of sorted tombstones the scan checks before its binary
/// search: one bit per id, at the id's low bits (as Faiss's
/// `IDSelectorBatch` does), in about 16 bits an id, so most entries that
/// are not hidden cost one load.
pub fn hidden_bloom(ids: &[i64]) -> Vec<u64> {
    let mut words = vec![0u64; hidden_bloom_words(ids.len())];
    add_to_hidden_bloom(&mut words, ids);
    words
}

/// The words of the bloom filter of `n` tombstones (0 for none): a set
/// that grows keeps its filter, and sets the new ids' bits, until this
/// changes.
pub fn hidden_bloom_words(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n * 16).next_power_of_two().max(64) / 64
    }
}

/// Sets the bits of `ids` in a filter of [`hidden_bloom_words`] words.
pub fn add_to_hidden_bloom(words: &mut [u64], ids: &[i64]) {
    if words.is_empty() {
        return;
    }
    let mask = words.len() as u64 * 64 - 1;
    for &id in ids {
        let b = id as u64 & mask;
        words[(b >> 6) as usize] |= 1 << (b & 63);
    }
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
