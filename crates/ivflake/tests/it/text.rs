//! Full-text and hybrid search of a mutable index against references
//! written here: BM25 scored exactly by hand (Lucene's formula, which
//! tantivy uses: its field norms are exact up to 40 terms, and documents
//! here have at most 30), over the live documents; RRF computed from the
//! vector-only and text-only rankings. Before compaction (the writes' index
//! in memory), after it (the base's bundle read from the store), and with
//! both, with deletes, overwrites, filters and returned columns; and what a
//! cold text query reads.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use ivflake::text::{Language, TextField, TextQuery};
use ivflake::{
    AttributeFilter, AttributeValue, CompactOptions, HybridQuery, IndexLocation, Metric, MutableIndex, MutableOptions,
    SearchParams, Staleness,
};
use ivflake_testkit::counting_store;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{clustered, options, uncached};

const D: usize = 8;
const K: usize = 10;
const VOCAB: usize = 300;

/// A document: its words (`w<n>`, which no analyzer changes) and category.
#[derive(Clone)]
struct Doc {
    words: Vec<String>,
    cat: String,
}

/// Words drawn with a Zipf-like skew, so some terms are common.
fn word(rng: &mut StdRng) -> String {
    let u: f64 = rng.gen_range(0.0..1.0);
    format!("w{}", ((VOCAB as f64).powf(u) as usize).min(VOCAB - 1))
}

fn doc(rng: &mut StdRng) -> Doc {
    let n = rng.gen_range(3..=30);
    Doc {
        words: (0..n).map(|_| word(rng)).collect(),
        cat: format!("c{}", rng.gen_range(0..4)),
    }
}

/// BM25 as Lucene and tantivy score it, over `live`.
fn reference(live: &HashMap<i64, Doc>, terms: &[String], allowed: impl Fn(&Doc) -> bool) -> Vec<(i64, f32)> {
    let n = live.len() as f64;
    let avgdl = live.values().map(|d| d.words.len() as f64).sum::<f64>() / n;
    let idf: Vec<f64> = terms
        .iter()
        .map(|t| {
            let df = live.values().filter(|d| d.words.contains(t)).count() as f64;
            (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
        })
        .collect();
    let (k1, b) = (1.2, 0.75);
    let mut out: Vec<(i64, f32)> = live
        .iter()
        .filter(|(_, d)| allowed(d))
        .filter_map(|(&id, d)| {
            let dl = d.words.len() as f64;
            let score: f64 = terms
                .iter()
                .zip(&idf)
                .map(|(t, idf)| {
                    let tf = d.words.iter().filter(|w| *w == t).count() as f64;
                    idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * dl / avgdl))
                })
                .sum();
            (score > 0.0).then_some((id, score as f32))
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// Ours equals the reference's first `K`: the same scores in order (ids
/// may differ only within a tie, which may cross the `K`-th place).
fn assert_ranking(ours: &[(i64, f32)], reference: &[(i64, f32)], what: &str) {
    assert_eq!(ours.len(), reference.len().min(K), "{what}: {ours:?} vs {reference:?}");
    for (a, b) in ours.iter().zip(reference) {
        assert!(
            (a.1 - b.1).abs() <= 1e-4 * b.1.max(1.0),
            "{what}: {ours:?} vs {reference:?}"
        );
        let tied = reference
            .iter()
            .filter(|r| (r.1 - a.1).abs() <= 1e-4 * a.1)
            .any(|r| r.0 == a.0);
        assert!(tied, "{what}: {} is not among the reference's at {}", a.0, a.1);
    }
}

fn attributes(docs: &[&Doc]) -> RecordBatch {
    RecordBatch::try_from_iter([
        (
            "body",
            Arc::new(StringArray::from_iter_values(docs.iter().map(|d| d.words.join(" ")))) as ArrayRef,
        ),
        (
            "cat",
            Arc::new(StringArray::from_iter_values(docs.iter().map(|d| d.cat.clone()))) as ArrayRef,
        ),
    ])
    .unwrap()
}

fn text_query(text: &str, k: usize) -> HybridQuery {
    HybridQuery {
        vector: None,
        texts: vec![TextQuery::new("body", text)],
        params: SearchParams::new(k, 4),
    }
}

async fn text_ranking(index: &MutableIndex, q: &HybridQuery) -> Vec<(i64, f32)> {
    let r = index.query(q).await.unwrap();
    r.hits.iter().map(|h| (h.id, h.bm25[0].unwrap())).collect()
}

struct Corpus {
    rng: StdRng,
    live: HashMap<i64, Doc>,
    vectors: HashMap<i64, Vec<f32>>,
    next: i64,
}

impl Corpus {
    fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            live: HashMap::new(),
            vectors: HashMap::new(),
            next: 0,
        }
    }

    async fn write(&mut self, index: &MutableIndex, n: usize) {
        let docs: Vec<Doc> = (0..n).map(|_| doc(&mut self.rng)).collect();
        let ids: Vec<i64> = (self.next..self.next + n as i64).collect();
        self.next += n as i64;
        let vectors = clustered(n, D, self.next as u64);
        let refs: Vec<&Doc> = docs.iter().collect();
        index
            .upsert_with(&vectors, &ids, Some(&attributes(&refs)))
            .await
            .unwrap();
        for (i, (id, d)) in ids.iter().zip(docs).enumerate() {
            self.live.insert(*id, d);
            self.vectors.insert(*id, vectors[i * D..(i + 1) * D].to_vec());
        }
    }

    fn queries(&mut self) -> Vec<String> {
        (0..12)
            .map(|i| {
                let n = 1 + i % 3;
                (0..n).map(|_| word(&mut self.rng)).collect::<Vec<_>>().join(" ")
            })
            .collect()
    }

    async fn check(&mut self, index: &MutableIndex, what: &str) {
        for text in self.queries() {
            let mut terms: Vec<String> = text.split(' ').map(String::from).collect();
            terms.dedup();
            let terms: Vec<String> = terms
                .iter()
                .enumerate()
                .filter(|(i, t)| !terms[..*i].contains(t))
                .map(|(_, t)| t.clone())
                .collect();
            let ours = text_ranking(index, &text_query(&text, K)).await;
            assert_ranking(
                &ours,
                &reference(&self.live, &terms, |_| true),
                &format!("{what}: {text}"),
            );
            // Filtered to a category: the same scores, fewer documents.
            let mut q = text_query(&text, K);
            q.params.attribute_filter = Some(AttributeFilter::from_json(&serde_json::json!({"cat": "c1"})).unwrap());
            q.params.return_attributes = vec!["cat".into()];
            let hits = index.query(&q).await.unwrap().hits;
            for h in &hits {
                assert_eq!(
                    h.attributes.as_ref().unwrap().get("cat"),
                    Some(&AttributeValue::Utf8("c1".into()))
                );
            }
            let ours: Vec<(i64, f32)> = hits.iter().map(|h| (h.id, h.bm25[0].unwrap())).collect();
            assert_ranking(
                &ours,
                &reference(&self.live, &terms, |d| d.cat == "c1"),
                &format!("{what}, cat c1: {text}"),
            );
        }
    }
}

fn text_options() -> MutableOptions {
    cached(uncached())
}

fn cached(config: ivflake::FetchConfig) -> MutableOptions {
    MutableOptions {
        staleness: Staleness::Strong,
        open: options(config),
        text_fields: vec![TextField::column("body", Language::En)],
        ..MutableOptions::default()
    }
}

/// A new IVF4,Flat index with the text field `body`, under `name` in `store`.
async fn text_index(store: Arc<dyn ObjectStore>, name: &str) -> (IndexLocation, MutableIndex) {
    let root = IndexLocation::new(store, name, format!("memory://text/{name}"));
    let index = MutableIndex::create_at(root.clone(), D, Metric::L2, "IVF4,Flat", text_options())
        .await
        .unwrap();
    (root, index)
}

#[tokio::test]
async fn bm25_equals_the_reference_before_and_after_compaction_and_after_writes() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (_, index) = text_index(store, "t").await;
    let mut corpus = Corpus::new(7);
    for _ in 0..4 {
        corpus.write(&index, 400).await;
    }
    corpus.check(&index, "writes only").await;
    index.compact(&CompactOptions::default()).await.unwrap().unwrap();
    assert!(index.version().text.is_some(), "compaction wrote the base's bundle");
    assert_eq!(index.unindexed().0, 0);
    corpus.check(&index, "compacted").await;
    corpus.write(&index, 300).await;
    corpus.check(&index, "base and writes").await;

    // Deletes and overwrites: a deleted id is never returned, an
    // overwritten one is found by its new text only.
    let gone: Vec<i64> = (0..100).map(|i| i * 7).collect();
    index.delete(&gone).await.unwrap();
    let changed: Vec<i64> = (0..20).map(|i| 5 + i * 11).filter(|id| !gone.contains(id)).collect();
    let new_doc = Doc {
        words: vec!["zebra".into(), "w1".into()],
        cat: "c1".into(),
    };
    let docs: Vec<&Doc> = changed.iter().map(|_| &new_doc).collect();
    let vectors: Vec<f32> = changed.iter().flat_map(|id| corpus.vectors[id].clone()).collect();
    index
        .upsert_with(&vectors, &changed, Some(&attributes(&docs)))
        .await
        .unwrap();
    let hits = text_ranking(&index, &text_query("zebra", 100)).await;
    let mut found: Vec<i64> = hits.iter().map(|h| h.0).collect();
    found.sort_unstable();
    assert_eq!(found, changed, "only the overwritten ids hold the new word");
    for text in corpus.queries() {
        for (id, _) in text_ranking(&index, &text_query(&text, 50)).await {
            assert!(!gone.contains(&id), "{id} was deleted");
        }
    }
    for id in &gone {
        corpus.live.remove(id);
    }
    for id in &changed {
        corpus.live.insert(*id, new_doc.clone());
    }
    index.compact(&CompactOptions::default()).await.unwrap().unwrap();
    corpus.check(&index, "compacted after deletes").await;
}

#[tokio::test]
async fn hybrid_results_are_rrf_of_the_vector_and_text_rankings() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (_, index) = text_index(store, "h").await;
    let mut corpus = Corpus::new(9);
    corpus.write(&index, 1500).await;
    index.compact(&CompactOptions::default()).await.unwrap().unwrap();
    corpus.write(&index, 200).await;
    let queries = clustered(5, D, 77);
    for (i, text) in corpus.queries().into_iter().take(5).enumerate() {
        let vector = queries[i * D..(i + 1) * D].to_vec();
        let v = index.search_with(&vector, &SearchParams::new(K, 4)).await.unwrap();
        let t = text_ranking(&index, &text_query(&text, K)).await;
        // The reference: 1 / (60 + rank) summed, ranks from 1.
        let mut fused: HashMap<i64, f64> = HashMap::new();
        for (rank, id) in v.ids.iter().enumerate().filter(|(_, &id)| id >= 0) {
            *fused.entry(*id).or_default() += 1.0 / (60.0 + rank as f64 + 1.0);
        }
        for (rank, (id, _)) in t.iter().enumerate() {
            *fused.entry(*id).or_default() += 1.0 / (60.0 + rank as f64 + 1.0);
        }
        let mut expected: Vec<(i64, f64)> = fused.into_iter().collect();
        expected.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        expected.truncate(K);
        let q = HybridQuery {
            vector: Some(vector),
            texts: vec![TextQuery::new("body", &text)],
            params: SearchParams::new(K, 4),
        };
        let hybrid = index.query(&q).await.unwrap().hits;
        let ours: Vec<(i64, f64)> = hybrid.iter().map(|h| (h.id, h.fused.unwrap() as f64)).collect();
        assert_eq!(ours.len(), expected.len(), "{text}");
        for (a, b) in ours.iter().zip(&expected) {
            assert!((a.1 - b.1).abs() < 1e-6, "{text}: {ours:?} vs {expected:?}");
        }
        for h in &hybrid {
            let in_vector = v.ids.iter().position(|&id| id == h.id);
            assert_eq!(
                h.distance,
                in_vector.map(|p| v.distances[p]),
                "{text}: distance of {}",
                h.id
            );
            assert_eq!(
                h.bm25[0],
                t.iter().find(|x| x.0 == h.id).map(|x| x.1),
                "{text}: bm25 of {}",
                h.id
            );
        }
    }
    let err = index
        .query(&HybridQuery {
            vector: None,
            texts: vec![TextQuery::new("title", "w1")],
            params: SearchParams::new(K, 4),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("title") && err.contains("text"), "{err}");
}

/// Opening reads the bundle's tail (one GET of exactly its bytes, beside
/// the refresh's reads); a cold text query is then one wave of postings,
/// at most one GET per term, as a cold vector query is one wave of lists.
#[tokio::test]
async fn a_cold_text_query_is_one_wave_of_postings_after_open() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let counting = Arc::new(counting_store(inner));
    let store: Arc<dyn ObjectStore> = counting.clone();
    let (root, writer) = text_index(store, "c").await;
    let mut corpus = Corpus::new(11);
    corpus.write(&writer, 3000).await;
    writer.compact(&CompactOptions::default()).await.unwrap().unwrap();
    let bundle = writer.version().text.unwrap();
    let is_tail = |r: &std::ops::Range<u64>| r.end == bundle.size && r.end - r.start == bundle.tail;

    counting.reset();
    let reader = MutableIndex::open_at(root.clone(), cached(ivflake::FetchConfig::default()))
        .await
        .unwrap();
    let tails = counting.ranges().iter().filter(|r| is_tail(r)).count();
    assert_eq!(tails, 1, "{:?}", counting.ranges());
    counting.reset();
    let cold = reader.query(&text_query("w1 w2 w3", K)).await.unwrap();
    assert_eq!(cold.hits.len(), K);
    let ranges = counting.ranges();
    assert!(!ranges.iter().any(is_tail), "{ranges:?}");
    // The three terms' postings, at most one GET each: one wave (the
    // log's LISTs are the refresh's).
    assert!((1..=3).contains(&cold.stats.gets), "{:?}", cold.stats);
    assert_eq!(counting.gets(), cold.stats.gets as usize, "{ranges:?}");
    assert_eq!(cold.stats.cost.get_requests, cold.stats.gets);
    // A hybrid query counts its vector search's GETs and the text's.
    let fresh = MutableIndex::open_at(root.clone(), cached(ivflake::FetchConfig::default()))
        .await
        .unwrap();
    counting.reset();
    let hybrid = fresh
        .query(&HybridQuery {
            vector: Some(clustered(1, D, 5)),
            texts: vec![TextQuery::new("body", "w1 w2 w3")],
            params: SearchParams::new(K, 2),
        })
        .await
        .unwrap();
    assert_eq!(hybrid.stats.gets as usize, counting.gets(), "{:?}", counting.ranges());
    assert_eq!(hybrid.stats.cost.get_requests, hybrid.stats.gets);
    // Warm: nothing read.
    counting.reset();
    reader.query(&text_query("w1 w2 w3", K)).await.unwrap();
    assert_eq!(counting.gets(), 0);

    // Another process compacts: the reader's refresh reads the new
    // bundle's tail beside the new base, once, and counts it; a text
    // query after it reads postings only.
    corpus.write(&writer, 500).await;
    writer.compact(&CompactOptions::default()).await.unwrap().unwrap();
    let next = writer.version().text.unwrap();
    assert_ne!(next.name, bundle.name);
    let is_next_tail = |r: &std::ops::Range<u64>| r.end == next.size && r.end - r.start == next.tail;
    counting.reset();
    let refreshed = reader.query(&text_query("w1 w2 w3", K)).await.unwrap();
    let ranges = counting.ranges();
    assert_eq!(ranges.iter().filter(|r| is_next_tail(r)).count(), 1, "{ranges:?}");
    assert_eq!(counting.gets() as u64, refreshed.stats.cost.get_requests, "{ranges:?}");
    counting.reset();
    reader.query(&text_query("w4 w5", K)).await.unwrap();
    assert!(!counting.ranges().iter().any(is_next_tail), "{:?}", counting.ranges());
}

/// A bundle others overwrote: a changed tail is refused by its checksum,
/// and garbage postings end the query with an error, never a crash.
#[tokio::test]
async fn a_corrupt_bundle_is_an_error_not_a_crash() {
    use object_store::ObjectStoreExt;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (root, writer) = text_index(store.clone(), "x").await;
    let mut corpus = Corpus::new(13);
    corpus.write(&writer, 1000).await;
    writer.compact(&CompactOptions::default()).await.unwrap().unwrap();
    let bundle = writer.version().text.unwrap();
    let path = object_store::path::Path::from(format!("x/{}", bundle.name));
    let good = store.get(&path).await.unwrap().bytes().await.unwrap().to_vec();
    let cold = (bundle.size - bundle.tail) as usize;

    let mut bad_tail = good.clone();
    bad_tail[cold + bundle.tail as usize / 2] ^= 0x5a;
    store.put(&path, bad_tail.into()).await.unwrap();
    let reader = MutableIndex::open_at(root.clone(), text_options()).await.unwrap();
    let err = reader.query(&text_query("w1 w2", K)).await.unwrap_err();
    assert!(matches!(err, ivflake::Error::Corrupt { .. }), "{err}");

    let mut bad_postings = good.clone();
    let mut rng = StdRng::seed_from_u64(1);
    for b in &mut bad_postings[..cold] {
        *b = rng.gen();
    }
    store.put(&path, bad_postings.into()).await.unwrap();
    let reader = MutableIndex::open_at(root, text_options()).await.unwrap();
    for text in ["w1", "w1 w2 w3", "w250"] {
        // Garbage postings decode to some documents or to an error; either
        // way the query returns, and soon.
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(20), reader.query(&text_query(text, K)))
            .await
            .expect("the query returned");
        if let Err(e) = outcome {
            assert!(
                matches!(e, ivflake::Error::Corrupt { .. } | ivflake::Error::Internal(_)),
                "{e}"
            );
        }
    }
}

/// Text queries between small writes: the writes' text index grows by
/// parts (not rebuilt per write), equal to the reference after each; an
/// entry overwritten since its part was built is found by its new text only.
#[tokio::test]
async fn text_queries_between_small_writes_see_each_write() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (_, index) = text_index(store, "w").await;
    let mut corpus = Corpus::new(21);
    for step in 0..12 {
        corpus.write(&index, 40).await;
        let text = corpus.queries()[step % 6].clone();
        let mut terms: Vec<String> = Vec::new();
        for t in text.split(' ') {
            if !terms.iter().any(|x| x == t) {
                terms.push(t.to_string());
            }
        }
        let ours = text_ranking(&index, &text_query(&text, K)).await;
        assert_ranking(
            &ours,
            &reference(&corpus.live, &terms, |_| true),
            &format!("step {step}: {text}"),
        );
    }
    // Overwrite entries of earlier parts with a new word.
    let changed: Vec<i64> = (0..10).map(|i| i * 31).collect();
    let new_doc = Doc {
        words: vec!["yak".into()],
        cat: "c2".into(),
    };
    let docs: Vec<&Doc> = changed.iter().map(|_| &new_doc).collect();
    let vectors: Vec<f32> = changed.iter().flat_map(|id| corpus.vectors[id].clone()).collect();
    let old: Vec<String> = changed.iter().map(|id| corpus.live[id].words[0].clone()).collect();
    index
        .upsert_with(&vectors, &changed, Some(&attributes(&docs)))
        .await
        .unwrap();
    let mut found: Vec<i64> = text_ranking(&index, &text_query("yak", 50))
        .await
        .iter()
        .map(|h| h.0)
        .collect();
    found.sort_unstable();
    assert_eq!(found, changed);
    for (id, word) in changed.iter().zip(&old) {
        let hits = text_ranking(&index, &text_query(word, 10_000)).await;
        assert!(
            !hits.iter().any(|h| h.0 == *id),
            "{id} still found by its old word {word}"
        );
    }
}
