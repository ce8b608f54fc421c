// Times a Faiss build searching an index file fully in memory, one query per
// search on one thread: the "same Faiss in memory" row of docs/benchmarks.md,
// and, compiled against Debian's 1.7.3, the scan ivflake used before.
//
// Build against the Faiss ivflake links (static, AVX2):
//   P=$(scripts/build_faiss.sh --prefix)
//   g++ -O2 -std=c++17 -fopenmp -mavx2 -mfma -mf16c -mpopcnt -I$P/include \
//       benchmarks/faiss_scan_bench.cc $P/lib/libfaiss_avx2.a -lblas -llapack -o faiss_scan_bench
// or against Debian's libfaiss-dev:
//   g++ -O2 -std=c++17 -fopenmp benchmarks/faiss_scan_bench.cc -lfaiss -lblas -llapack -o faiss_scan_bench_173
// Run: faiss_scan_bench INDEX QUERIES.f32 D NPROBE K ITERATIONS
// QUERIES.f32 holds raw little-endian float32 rows of D values.
// Prints one JSON line.

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <vector>

#include <faiss/Index.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/index_io.h>

int main(int argc, char** argv) {
    if (argc != 7) {
        std::fprintf(stderr, "usage: %s INDEX QUERIES.f32 D NPROBE K ITERATIONS\n", argv[0]);
        return 2;
    }
    const int d = std::atoi(argv[3]);
    const int nprobe = std::atoi(argv[4]);
    const int k = std::atoi(argv[5]);
    const int iterations = std::atoi(argv[6]);
    omp_set_num_threads(1);

    std::unique_ptr<faiss::Index> index(faiss::read_index(argv[1]));
    faiss::IndexIVF* ivf = dynamic_cast<faiss::IndexIVF*>(index.get());
    if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index.get())) {
        ivf = dynamic_cast<faiss::IndexIVF*>(pt->index);
    }
    if (!ivf) {
        std::fprintf(stderr, "not an IVF index\n");
        return 1;
    }
    ivf->nprobe = nprobe;

    std::ifstream in(argv[2], std::ios::binary | std::ios::ate);
    const size_t bytes = size_t(in.tellg());
    in.seekg(0);
    std::vector<float> queries(bytes / sizeof(float));
    in.read(reinterpret_cast<char*>(queries.data()), bytes);
    const size_t nq = queries.size() / size_t(d);

    std::vector<float> dis(k);
    std::vector<int64_t> ids(k);  // faiss::idx_t; spelled Index::idx_t in 1.7
    for (size_t i = 0; i < std::min<size_t>(nq, 50); i++) {  // warm caches
        index->search(1, &queries[i * d], k, dis.data(), ids.data());
    }
    std::vector<double> ms(iterations);
    for (int it = 0; it < iterations; it++) {
        const float* q = &queries[(it % nq) * d];
        auto t0 = std::chrono::steady_clock::now();
        index->search(1, q, k, dis.data(), ids.data());
        ms[it] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
    std::sort(ms.begin(), ms.end());
    std::printf(
            "{\"faiss\": \"%d.%d.%d\", \"index\": \"%s\", \"p50_ms\": %.4f, \"p99_ms\": %.4f}\n",
            FAISS_VERSION_MAJOR,
            FAISS_VERSION_MINOR,
            FAISS_VERSION_PATCH,
            argv[1],
            ms[ms.size() / 2],
            ms[ms.size() * 99 / 100]);
    return 0;
}
