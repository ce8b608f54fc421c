# syntax=docker/dockerfile:1
#
# The `ivflake` binary in a slim Debian image, for `ivflake serve` (and
# `ivflake compact --watch`); deploy/README.md shows how to build and run it.
#
#   DOCKER_BUILDKIT=1 docker build -t ivflake:0.1.0 .
#   docker build --build-arg FAISS_OPT_LEVEL=generic -t ivflake:0.1.0-generic .
#
# python/tests/test_deploy.py lints this file with hadolint and checks that
# it builds Faiss with the same script (and so the same version) as the
# Makefile.

# ---- builder: Faiss, then the ivflake binary -------------------------------
# The workspace's rust-version is 1.94 (Cargo.toml); Debian 12 as at runtime,
# so the binary links the same glibc, libstdc++ and OpenBLAS sonames.
FROM rust:1.95-bookworm AS builder

# What scripts/build_faiss.sh needs beside the image's cargo and git: cmake
# >= 3.24, a C++17 compiler and OpenBLAS (BLAS and LAPACK). Versions pinned
# to bookworm's (a prefix, so Debian's point releases still install).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        cmake=3.25.* \
        g++=4:12.2.* \
        libopenblas-dev=0.3.21+ds-* \
    && rm -rf /var/lib/apt/lists/*

# Faiss 1.12 has no run-time SIMD dispatch: the level is fixed here, not
# taken from the build machine's CPU. avx2 (x86-64-v3: Haswell, Zen and
# later) dies with SIGILL on older CPUs; `generic` runs anywhere, slower.
ARG FAISS_OPT_LEVEL=avx2
# Read by build_faiss.sh, and by crates/ivflake-faiss/build.rs (which asks
# the script for the prefix), so both name the same build.
ENV IVFLAKE_FAISS_OPT_LEVEL=${FAISS_OPT_LEVEL}

WORKDIR /src
# Faiss first, in a layer of its own: it takes minutes and changes only with
# the script or its patch. It lands in ~/.cache/ivflake as a static library
# (libfaiss_avx2.a or libfaiss.a) and headers.
COPY scripts/build_faiss.sh scripts/faiss-reader-hardening.patch scripts/
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    scripts/build_faiss.sh

# The workspace: every member's manifest must be present for cargo to load
# it (python/ is the Python binding, not built here).
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY python/Cargo.toml python/Cargo.toml
COPY python/src python/src
# Registry and target dir in BuildKit caches, so a rebuild compiles only what
# changed; the binary is copied out of the cache mount, into the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p ivflake-cli \
    && install -D -m 0755 target/release/ivflake /out/ivflake

# ---- runtime ---------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

ARG FAISS_OPT_LEVEL=avx2
LABEL org.opencontainers.image.title="ivflake" \
      org.opencontainers.image.description="Serves Faiss IVF indexes from object storage" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.ivflake.faiss-opt-level="${FAISS_OPT_LEVEL}"

# Faiss is linked statically; the binary needs what build.rs links after it
# (libblas.so.3 and liblapack.so.3, which libopenblas0-pthread provides as
# Debian alternatives, and libgomp.so.1), libstdc++, and the CA certificates
# rustls loads for HTTPS to the store. The libraries are pinned to the
# builder's versions. ca-certificates is not: its upstream version changes
# within a Debian release (a pin would break the build once the mirror drops
# it), and the trust store should be the newest.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates \
        libgomp1=12.2.0-* \
        libopenblas0-pthread=0.3.21+ds-* \
        libstdc++6=12.2.0-* \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 ivflake \
    && useradd --uid 10001 --gid ivflake --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin ivflake \
    && install -d -o ivflake -g ivflake -m 0750 /var/cache/ivflake \
    && install -d -m 0755 /etc/ivflake

COPY --from=builder /out/ivflake /usr/local/bin/ivflake

# Numeric, so Kubernetes can check runAsNonRoot against it.
USER 10001:10001
# The disk cache tier (`[cache] disk_dir`): a cache, fine to lose, kept off
# the container's writable layer.
VOLUME ["/var/cache/ivflake"]
EXPOSE 8080
# Faiss's idle OpenMP threads sleep instead of spinning through a CPU quota.
ENV OMP_WAIT_POLICY=PASSIVE
ENTRYPOINT ["ivflake"]
# The config is mounted here (a ConfigMap in deploy/k8s/base; `docker run -v`).
CMD ["serve", "--config", "/etc/ivflake/ivflake.toml"]
