"""ivflake's benchmarks: each module is a command that prints a table or JSON
for docs/benchmarks.md, never a test. Run them from the repo root as modules,
so they import each other as a package:

    .venv/bin/python -m benchmarks.bench_http --help

Files, by the section of docs/benchmarks.md they feed:

    common.py                what several benchmarks share: the clustered data
                             generator, latency summaries, loopback ports
    bench_scale.py           10M vectors from S3 (s3rver behind latency_proxy.py)
                             and a local directory, beside Faiss and LanceDB
    latency_proxy.py         the loopback proxy adding a round trip to each request
    plot_benchmarks.py       bench_scale.py's JSON as plots in docs/img
    bench_http.py            `ivflake serve` under wrk, beside the library
    bench_readahead.py       a trace-driven study of reading ahead into lists
    bench_filtered.py        attribute filters next to LanceDB (prefilter)
    bench_warm_filtered.py   warm filtered searches, two ivflake builds A B A B
    bench_files.py           the index files of "Warm latency by list layout"
    bench_faiss_cpu.py       faiss-cpu in memory on one of those files
    faiss_scan_bench.cc      the same with the Faiss ivflake links (C++)
    bench_residual_table.py  IVF-PQ's precomputed residual table on and off

The Python package's own benchmark (warm `Index.search` against faiss-cpu)
sits beside its tests, in python/benchmarks/. Test and build infrastructure
(the Faiss build, fixtures, the moto S3 server) is in scripts/.
"""
