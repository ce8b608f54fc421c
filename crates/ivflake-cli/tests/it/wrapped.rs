//! `ivflake search --k-factor` and `ivflake inspect` on the files people
//! write for big indexes (faiss-cpu fixtures): a refined, an id-mapped and an
//! on-disk index, each answer equal to faiss-cpu's.

use std::process::Command;

use ivflake_testkit::{fixtures, npy_i64};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ivflake");

fn run(args: &[&str]) -> (String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .env("OPENBLAS_NUM_THREADS", "1")
        .output()
        .expect("run ivflake");
    assert!(
        out.status.success(),
        "ivflake {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn ids(stdout: &str) -> Vec<i64> {
    stdout
        .lines()
        .flat_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_i64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn search_with_k_factor_and_inspect_equal_faiss_cpu() {
    let dir = fixtures();
    let queries = dir.join("queries.npy");
    let q = queries.to_str().unwrap();
    for (name, k_factor, expected) in [
        ("ivfpq_rflat_l2", Some("16"), "ivfpq_rflat_l2.kf16.ids.npy"),
        ("ivfpq_rsqfp16_l2", Some("1"), "ivfpq_rsqfp16_l2.kf1.ids.npy"),
        ("idmap2_ivfpq_rflat_l2", Some("4"), "idmap2_ivfpq_rflat_l2.kf4.ids.npy"),
        ("ondisk_ivfpq_l2", None, "ondisk_ivfpq_l2.ids.npy"),
    ] {
        let file = dir.join(format!("{name}.faiss"));
        let mut args = vec![
            "search",
            file.to_str().unwrap(),
            "--queries",
            q,
            "-k",
            "10",
            "--nprobe",
            "8",
            "--stats",
        ];
        if let Some(kf) = k_factor {
            args.extend(["--k-factor", kf]);
        }
        let (out, err) = run(&args);
        assert_eq!(ids(&out), npy_i64(&dir.join(expected)), "{name}");
        if k_factor.is_some() {
            let stats: Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
            assert!(stats["refine_bytes"].as_u64().unwrap() > 0, "{err}");
        }
        let (report, _) = run(&["inspect", "--json", file.to_str().unwrap()]);
        let report: Value = serde_json::from_str(&report).unwrap();
        assert_eq!(report["refine"].is_object(), k_factor.is_some(), "{report}");
        assert_eq!(report["id_map"].is_object(), name.starts_with("idmap"), "{report}");
        assert_eq!(
            report["lists_uri"].as_str().is_some_and(|u| u.ends_with(".ivfdata")),
            name.starts_with("ondisk"),
            "{report}"
        );
    }
}
