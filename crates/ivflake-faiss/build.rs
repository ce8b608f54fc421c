//! Finds Faiss the rust-rocksdb way: an environment override first, then the
//! cache `scripts/build_faiss.sh` builds into, and a clear message when
//! neither has it.
//!
//! ivflake needs Faiss >= 1.12 (fast-scan and RaBitQ lists); Debian's 1.7.3
//! is no longer enough. An install holding `lib/libfaiss_avx2.a` is an AVX2
//! build: the shim is compiled with the same `-mavx2 -mfma -mf16c -mpopcnt`
//! flags, so Faiss's inline header code agrees on both sides.
use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Must match `FAISS_VERSION` in scripts/build_faiss.sh.
const FAISS_VERSION: &str = "1.12.0";
const AVX2_FLAGS: &[&str] = &["-mavx2", "-mfma", "-mf16c", "-mpopcnt"];

fn main() {
    for var in [
        "IVFLAKE_FAISS_DIR",
        "IVFLAKE_FAISS_LIBS",
        "IVFLAKE_FAISS_OPT_LEVEL",
        "XDG_CACHE_HOME",
        "HOME",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    for file in [
        "cpp/shim.cc",
        "cpp/scan.cc",
        "cpp/build.cc",
        "cpp/validate.cc",
        "cpp/arena.cc",
        "cpp/wrap.cc",
        "cpp/shim.h",
        "cpp/reader.h",
        "cpp/internal.h",
        "src/lib.rs",
    ] {
        println!("cargo:rerun-if-changed={file}");
    }

    let prefix = find_faiss();
    let lib_dirs = [
        prefix.join("lib"),
        prefix.join("lib64"),
        prefix.join("lib/x86_64-linux-gnu"),
    ];
    let avx2 = lib_dirs.iter().any(|d| d.join("libfaiss_avx2.a").exists());
    println!(
        "cargo:rerun-if-changed={}",
        prefix.join("include/faiss/Index.h").display()
    );

    let mut build = cxx_build::bridge("src/lib.rs");
    build
        .file("cpp/shim.cc")
        .file("cpp/scan.cc")
        .file("cpp/build.cc")
        .file("cpp/validate.cc")
        .file("cpp/arena.cc")
        .file("cpp/wrap.cc")
        .include(prefix.join("include"))
        .include("cpp")
        .std("c++17")
        .flag_if_supported("-fopenmp")
        .flag_if_supported("-Wno-unused-parameter");
    if avx2 {
        for flag in AVX2_FLAGS {
            build.flag(flag);
        }
    }
    build.compile("ivflake_faiss_shim");

    for dir in &lib_dirs {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
    // A static libfaiss needs BLAS/LAPACK and OpenMP after it.
    let default_libs = if avx2 {
        "faiss_avx2,blas,lapack,gomp"
    } else {
        "faiss,blas,lapack,gomp"
    };
    let libs = env::var("IVFLAKE_FAISS_LIBS").unwrap_or_else(|_| default_libs.into());
    for lib in libs.split(',').map(str::trim).filter(|l| !l.is_empty()) {
        println!("cargo:rustc-link-lib={lib}");
    }
}

/// `IVFLAKE_FAISS_DIR=/opt/faiss` points at an install prefix holding
/// `include/faiss/IndexIVF.h` and `lib/libfaiss*.a`; otherwise the cache
/// prefix `scripts/build_faiss.sh --prefix` names (the script owns the cache
/// key: version, SIMD level, flags, compiler).
fn find_faiss() -> PathBuf {
    if let Ok(dir) = env::var("IVFLAKE_FAISS_DIR") {
        let prefix = PathBuf::from(dir);
        if !prefix.join("include/faiss/IndexIVF.h").exists() {
            panic!(
                "IVFLAKE_FAISS_DIR={} has no include/faiss/IndexIVF.h; point it at a Faiss >= 1.12 install prefix",
                prefix.display()
            );
        }
        return prefix;
    }
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let script = manifest_dir.join("../../scripts/build_faiss.sh");
    println!("cargo:rerun-if-changed={}", script.display());
    let output = Command::new("bash")
        .arg(&script)
        .arg("--prefix")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let prefix = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if !output.status.success() || !prefix.join(".complete").exists() {
        panic!(
            "Faiss {FAISS_VERSION} is not built yet (looked in {}). Build it once with \
             `scripts/build_faiss.sh` (`make deps` does this: a few minutes on 2 cores), or set \
             IVFLAKE_FAISS_DIR to a Faiss >= 1.12 install prefix.",
            prefix.display()
        );
    }
    println!("cargo:rerun-if-changed={}", prefix.join(".complete").display());
    prefix
}
