#!/usr/bin/env bash
# Builds the Faiss that ivflake links, once per machine, into a cache outside
# the source tree:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/ivflake/faiss-<version>-<opt level>-<hash>/
#       include/faiss/...   headers
#       lib/libfaiss_avx2.a (or lib/libfaiss.a for the generic build)
#       .complete           written last: a prefix without it is rebuilt
#
# The hash covers everything that changes the binary (version, opt level,
# cmake flags, compiler), so a second run finds the prefix and returns at once,
# and a changed flag builds a new prefix beside the old one.
#
# Sources: Faiss 1.12.0 as bundled in the `faiss-sys` 0.7.0 crate on crates.io,
# fetched with cargo (checksummed by the registry index), since only package
# registries are reachable from CI.
#
# SIMD: Faiss 1.12 has no run-time dispatch, so the level is chosen at build
# time: avx2 when /proc/cpuinfo lists avx2, fma and f16c, else the generic
# build (same results, slower scans). IVFLAKE_FAISS_OPT_LEVEL=generic|avx2
# overrides. A binary built with avx2 dies with SIGILL on a CPU without it.
#
# Usage: scripts/build_faiss.sh          build if needed, print the prefix
#        scripts/build_faiss.sh --prefix print the prefix only
set -euo pipefail

FAISS_VERSION=1.12.0
FAISS_SYS_VERSION=0.7.0

if [[ -n "${IVFLAKE_FAISS_OPT_LEVEL:-}" ]]; then
    opt_level=$IVFLAKE_FAISS_OPT_LEVEL
elif grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo; then
    opt_level=avx2
else
    opt_level=generic
fi
case $opt_level in
    avx2) target=faiss_avx2 ;;
    generic) target=faiss ;;
    *) echo "IVFLAKE_FAISS_OPT_LEVEL must be generic or avx2, not '$opt_level'" >&2; exit 2 ;;
esac

cmake_flags=(
    -DCMAKE_BUILD_TYPE=Release
    -DFAISS_OPT_LEVEL="$opt_level"
    -DFAISS_ENABLE_GPU=OFF
    -DFAISS_ENABLE_PYTHON=OFF
    -DFAISS_ENABLE_C_API=OFF
    -DFAISS_ENABLE_EXTRAS=OFF
    -DFAISS_ENABLE_MKL=OFF
    -DBUILD_TESTING=OFF
    -DBUILD_SHARED_LIBS=OFF
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON
)
compiler=$(c++ --version 2>/dev/null | head -1 || echo unknown)
# ivflake's fixes to Faiss's reader (see the file); a changed patch is a new build.
patch_file=$(cd "$(dirname "$0")" && pwd)/faiss-reader-hardening.patch
patch_hash=$(sha256sum "$patch_file" | cut -c1-16)
key=$(printf '%s\n' "$FAISS_VERSION" "$FAISS_SYS_VERSION" "$target" "${cmake_flags[@]}" "$compiler" "$patch_hash" |
    sha256sum | cut -c1-12)
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/ivflake
prefix=$cache_root/faiss-$FAISS_VERSION-$opt_level-$key

if [[ "${1:-}" == "--prefix" || -f "$prefix/.complete" ]]; then
    echo "$prefix"
    exit 0
fi

for tool in cmake c++ cargo; do
    command -v "$tool" >/dev/null || { echo "build_faiss.sh needs $tool (make deps installs it)" >&2; exit 1; }
done

mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log=$prefix.log
: >"$log"
started=$(date +%s)
echo "Building Faiss $FAISS_VERSION ($opt_level) once into $prefix; log in $log" >&2

# A throwaway package whose only dependency is faiss-sys, vendored so its
# sources land at a known path.
mkdir -p "$work/fetch"
cat >"$work/fetch/Cargo.toml" <<EOF
[package]
name = "ivflake-faiss-source"
version = "0.0.0"
edition = "2021"
publish = false
[lib]
path = "lib.rs"
[dependencies]
faiss-sys = "=$FAISS_SYS_VERSION"
EOF
: >"$work/fetch/lib.rs"
(cd "$work/fetch" && cargo vendor --quiet --versioned-dirs "$work/vendor" >/dev/null) 2>>"$log"
src=$work/vendor/faiss-sys-$FAISS_SYS_VERSION/faiss
grep -q "VERSION $FAISS_VERSION" "$src/CMakeLists.txt" ||
    { echo "faiss-sys $FAISS_SYS_VERSION does not bundle Faiss $FAISS_VERSION" >&2; exit 1; }
(cd "$src" && git apply "$patch_file") 2>>"$log" ||
    { echo "cannot apply $patch_file to Faiss $FAISS_VERSION; see $log" >&2; exit 1; }

cmake -S "$src" -B "$work/build" "${cmake_flags[@]}" >>"$log" 2>&1 ||
    { echo "cmake configure failed; see $log (needs cmake >= 3.24 and libopenblas-dev)" >&2; exit 1; }
cmake --build "$work/build" --target "$target" -j "$(nproc)" >>"$log" 2>&1 ||
    { echo "Faiss build failed; see $log" >&2; exit 1; }

# Install by hand: Faiss's install rule wants every library target built.
# Staged inside the work directory and renamed into place, so a concurrent
# build or an interrupted one never leaves a half-filled prefix behind.
staging=$work/install
mkdir -p "$staging/lib" "$staging/include"
(cd "$src" && find faiss -name '*.h' -not -path 'faiss/gpu/*' -exec cp --parents {} "$staging/include/" \;)
cp "$work/build/faiss/lib$target.a" "$staging/lib/"
printf 'faiss %s %s (%s)\n' "$FAISS_VERSION" "$opt_level" "$compiler" >"$staging/.complete"
[[ -f "$prefix/.complete" ]] || { rm -rf "$prefix" && mv -T "$staging" "$prefix"; }
echo "Faiss $FAISS_VERSION built in $(($(date +%s) - started)) s" >&2
echo "$prefix"
