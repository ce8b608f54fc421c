//! Reciprocal Rank Fusion (Cormack, Clarke and Büttcher, SIGIR 2009): a
//! document's fused score is the sum over the rankings holding it of
//! `1 / (RRF_K + rank)`, ranks from 1. Scores of different kinds (distances,
//! BM25) are never compared, only ranks.

use std::collections::HashMap;

/// The constant of the paper, which Elasticsearch, OpenSearch and LanceDB
/// also use.
pub const RRF_K: f32 = 60.0;

/// Fuses rankings (ids, best first) into the best `k` by fused score, ties
/// broken by the smaller id.
pub fn rrf(rankings: &[Vec<i64>], k: usize) -> Vec<(i64, f32)> {
    let mut fused: HashMap<i64, f32> = HashMap::new();
    for ranking in rankings {
        for (rank, &id) in ranking.iter().enumerate() {
            *fused.entry(id).or_default() += 1.0 / (RRF_K + rank as f32 + 1.0);
        }
    }
    let mut out: Vec<(i64, f32)> = fused.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out.truncate(k);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_in_both_rankings_beats_one_first_in_one() {
        let fused = rrf(&[vec![1, 2, 3], vec![3, 4, 1]], 3);
        let ids: Vec<i64> = fused.iter().map(|f| f.0).collect();
        // 1: 1/61 + 1/63; 3: 1/63 + 1/61, a tie broken by id; then 2 and
        // 4, 1/62 each, a tie broken by id again.
        assert_eq!(ids, [1, 3, 2]);
        assert!((fused[0].1 - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-7);
        assert!((fused[2].1 - 1.0 / 62.0).abs() < 1e-7);
    }
}
