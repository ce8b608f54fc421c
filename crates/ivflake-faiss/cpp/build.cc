// ivflake's C++ shim over Faiss: building indexes (the `build`, `bench` and
// `demo` commands and tests). Nothing here runs while serving.

#include <memory>
#include <string>
#include <vector>

#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include "internal.h"
#include "ivflake-faiss/src/lib.rs.h"

namespace ivflake {

std::unique_ptr<IvfIndex> index_factory(
        size_t d,
        rust::Str description,
        bool metric_l2) {
    std::string desc(description);
    auto out = std::make_unique<IvfIndex>();
    out->top.reset(faiss::index_factory(
            int(d),
            desc.c_str(),
            metric_l2 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT));
    out->transform = dynamic_cast<faiss::IndexPreTransform*>(out->top.get());
    faiss::Index* inner = out->transform ? out->transform->index : out->top.get();
    out->ivf = dynamic_cast<faiss::IndexIVF*>(inner);
    return out;
}

bool is_trained(const IvfIndex& index) {
    return index.top->is_trained;
}

void train(IvfIndex& index, size_t n, rust::Slice<const float> x) {
    all_cores();
    check_len(x.size(), n * size_t(index.top->d), "training vectors");
    index.top->train(idx_t(n), x.data());
}

void add(IvfIndex& index, size_t n, rust::Slice<const float> x) {
    all_cores();
    check_len(x.size(), n * size_t(index.top->d), "vectors");
    if (index.lazy) {
        fail(ErrorKind::InvalidArgument, "indexes served from object storage are read-only");
    }
    index.top->add(idx_t(n), x.data());
}

void add_with_ids(
        IvfIndex& index,
        size_t n,
        rust::Slice<const float> x,
        rust::Slice<const int64_t> ids) {
    all_cores();
    check_len(x.size(), n * size_t(index.top->d), "vectors");
    check_len(ids.size(), n, "ids");
    if (index.lazy) {
        fail(ErrorKind::InvalidArgument, "indexes served from object storage are read-only");
    }
    index.top->add_with_ids(idx_t(n), x.data(), ids.data());
}

std::unique_ptr<std::vector<uint8_t>> write_index_bytes(const IvfIndex& index) {
    if (index.lazy) {
        fail(ErrorKind::InvalidArgument, "a lazily opened index holds no list data to write");
    }
    faiss::VectorIOWriter writer;
    faiss::write_index(index.top.get(), &writer);
    return std::make_unique<std::vector<uint8_t>>(std::move(writer.data));
}

}  // namespace ivflake
