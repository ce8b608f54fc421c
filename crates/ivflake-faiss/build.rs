//! Finds Faiss the rust-rocksdb way: an environment override first, then the
//! system locations Debian's `libfaiss-dev` installs to, and a clear message
//! when neither has it.
use std::env;
use std::path::{Path, PathBuf};

const SYSTEM_PREFIXES: &[&str] = &["/usr", "/usr/local"];

fn main() {
    println!("cargo:rerun-if-env-changed=IVFLAKE_FAISS_DIR");
    println!("cargo:rerun-if-env-changed=IVFLAKE_FAISS_LIBS");
    println!("cargo:rerun-if-changed=cpp/shim.cc");
    println!("cargo:rerun-if-changed=cpp/shim.h");
    println!("cargo:rerun-if-changed=src/lib.rs");

    let (include_dir, lib_dirs) = find_faiss();

    cxx_build::bridge("src/lib.rs")
        .file("cpp/shim.cc")
        .include(&include_dir)
        .include("cpp")
        .std("c++17")
        .flag_if_supported("-fopenmp")
        .flag_if_supported("-Wno-unused-parameter")
        .compile("ivflake_faiss_shim");

    for dir in &lib_dirs {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
    // Debian's libfaiss.a is static and needs BLAS/LAPACK and OpenMP after it.
    let libs = env::var("IVFLAKE_FAISS_LIBS").unwrap_or_else(|_| "faiss,blas,lapack,gomp".into());
    for lib in libs.split(',').map(str::trim).filter(|l| !l.is_empty()) {
        println!("cargo:rustc-link-lib={lib}");
    }
}

/// `IVFLAKE_FAISS_DIR=/opt/faiss` points at an install prefix holding
/// `include/faiss/IndexIVF.h` and `lib/libfaiss.*`.
fn find_faiss() -> (PathBuf, Vec<PathBuf>) {
    if let Ok(dir) = env::var("IVFLAKE_FAISS_DIR") {
        let prefix = PathBuf::from(dir);
        let include = prefix.join("include");
        if !include.join("faiss/IndexIVF.h").exists() {
            panic!(
                "IVFLAKE_FAISS_DIR={} has no include/faiss/IndexIVF.h; point it at a Faiss install prefix",
                prefix.display()
            );
        }
        return (include, vec![prefix.join("lib"), prefix.join("lib64")]);
    }
    for prefix in SYSTEM_PREFIXES {
        let include = Path::new(prefix).join("include");
        if include.join("faiss/IndexIVF.h").exists() {
            let multiarch = Path::new(prefix).join("lib/x86_64-linux-gnu");
            return (include, vec![multiarch, Path::new(prefix).join("lib")]);
        }
    }
    panic!(
        "Faiss was not found. Install it with `apt-get install libfaiss-dev libopenblas-dev` \
         (the README's `make` targets do this), or set IVFLAKE_FAISS_DIR to a Faiss install prefix."
    );
}
