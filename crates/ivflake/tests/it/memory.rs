//! What an opened index holds in memory, by part, and the residual-table
//! setting: IVF-PQ's precomputed table (nlist × M × ksub floats) is built only
//! within its budget, and searches are exact either way.

use crate::common::*;
use ivflake::{FetchConfig, Metric, OpenOptions, ResidualTable};

const D: usize = 16;
const NLIST: u64 = 64;
const M: u64 = 8;
const KSUB: u64 = 256;
const TABLE: u64 = NLIST * M * KSUB * 4;

fn with_table(setting: ResidualTable) -> OpenOptions {
    OpenOptions {
        residual_table: setting,
        ..options(FetchConfig::default())
    }
}

#[tokio::test]
async fn the_residual_table_is_built_within_its_budget_and_searches_are_exact_either_way() {
    let bytes = build_index("IVF64,PQ8np", Metric::L2, D, 5000);
    let reference = ivflake_faiss::read_index(&bytes).unwrap();
    let queries = clustered(30, D, 7);
    let theirs = reference.search(&queries, 10, 8).unwrap();
    for (setting, built) in [
        (ResidualTable::On, true),
        (ResidualTable::Off, false),
        (ResidualTable::Auto { max_bytes: TABLE }, true),
        (ResidualTable::Auto { max_bytes: TABLE - 1 }, false),
    ] {
        let (index, _) = open_in_memory_with(bytes.clone(), with_table(setting)).await;
        let memory = index.memory();
        assert_eq!(memory.residual_table_size, TABLE, "{setting:?}");
        assert_eq!(
            memory.residual_table_bytes,
            if built { TABLE } else { 0 },
            "{setting:?}"
        );
        assert_eq!(memory.quantizer_bytes, NLIST * D as u64 * 4, "64 centroids of d=16");
        assert_eq!(memory.codec_bytes, D as u64 * KSUB * 4, "the PQ codebooks");
        assert_eq!(memory.transform_bytes, 0);
        assert!(memory.layout_bytes >= NLIST * 8, "list sizes: {memory:?}");
        assert_eq!(
            memory.total_bytes(),
            memory.quantizer_bytes + memory.codec_bytes + memory.residual_table_bytes + memory.layout_bytes
        );
        let ours = index.search(&queries, 10, 8).await.unwrap();
        if built {
            // The same table Faiss builds at load: bit-identical.
            assert_same(&ours, &theirs, &format!("{setting:?}"));
        } else {
            // Each list's table computed per query instead: the same
            // neighbours, distances equal up to float rounding.
            assert_eq!(ours.ids, theirs.labels, "{setting:?}");
            for (a, b) in ours.distances.iter().zip(&theirs.distances) {
                assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "{setting:?}: {a} vs {b}");
            }
        }
    }
}

#[tokio::test]
async fn codecs_without_a_residual_table_report_none() {
    // Inner product and flat codes: Faiss builds no table for either.
    for (factory, metric) in [("IVF64,PQ8np", Metric::InnerProduct), ("IVF64,Flat", Metric::L2)] {
        let (index, _) =
            open_in_memory_with(build_index(factory, metric, D, 3000), with_table(ResidualTable::On)).await;
        let memory = index.memory();
        assert_eq!(
            (memory.residual_table_size, memory.residual_table_bytes),
            (0, 0),
            "{factory}"
        );
        assert_eq!(memory.quantizer_bytes, NLIST * D as u64 * 4, "{factory}");
    }
}
