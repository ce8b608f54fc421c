// ivflake's C++ shim over Faiss: building indexes (the `build`, `bench` and
// `demo` commands and tests). Nothing here runs while serving.

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <faiss/IndexIVFPQFastScan.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/impl/pq4_fast_scan.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include "internal.h"
#include "ivflake-faiss/src/lib.rs.h"

namespace ivflake {

std::unique_ptr<IvfIndex> index_factory(
        size_t d,
        rust::Str description,
        Metric metric) {
    std::string desc(description);
    auto out = std::make_unique<IvfIndex>();
    out->owner.reset(faiss::index_factory(
            int(d),
            desc.c_str(),
            metric == Metric::L2 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT));
    // IDMap and refine wrappers: built, trained and written whole; searched
    // through the served index inside.
    unwrap(*out);
    out->transform = dynamic_cast<faiss::IndexPreTransform*>(out->top);
    faiss::Index* inner = out->transform ? out->transform->index : out->top;
    out->ivf = dynamic_cast<faiss::IndexIVF*>(inner);
    return out;
}

bool is_trained(const IvfIndex& index) {
    return index.owner->is_trained;
}

void train(IvfIndex& index, size_t n, rust::Slice<const float> x) {
    all_cores();
    check_len(x.size(), n * size_t(index.top->d), "training vectors");
    index.owner->train(idx_t(n), x.data());
}

void add(IvfIndex& index, size_t n, rust::Slice<const float> x) {
    all_cores();
    check_len(x.size(), n * size_t(index.top->d), "vectors");
    if (index.lazy) {
        fail(ErrorKind::InvalidArgument, "indexes served from object storage are read-only");
    }
    index.owner->add(idx_t(n), x.data());
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
    index.owner->add_with_ids(idx_t(n), x.data(), ids.data());
}

// Encodes vectors as `add` would store them, without storing them: each
// one's list and its code. Writes (delta runs) build their lists from this.
void encode_entries(
        const IvfIndex& index,
        size_t n,
        rust::Slice<const float> x,
        rust::Slice<int64_t> lists,
        rust::Slice<uint8_t> codes) {
    single_threaded();
    const auto& ivf = require_ivf(index);
    check_len(x.size(), n * size_t(index.top->d), "vectors");
    check_len(lists.size(), n, "lists");
    check_len(codes.size(), n * ivf.code_size, "codes");
    const float* xt = x.data();
    std::unique_ptr<const float[]> owned;
    if (index.transform) {
        xt = index.transform->apply_chain(idx_t(n), x.data());
        if (xt != x.data()) {
            owned.reset(xt);
        }
    }
    ivf.quantizer->assign(idx_t(n), xt, lists.data());
    ivf.encode_vectors(idx_t(n), xt, lists.data(), codes.data(), false);
}

// One list's codes in the index's list format: fast-scan packs them into
// blocks of bbs vectors (Faiss's pq4_pack_codes), the others store them as
// they are.
void pack_list_codes(
        const IvfIndex& index,
        size_t n,
        rust::Slice<const uint8_t> codes,
        rust::Slice<uint8_t> out) {
    const auto& ivf = require_ivf(index);
    check_len(codes.size(), n * ivf.code_size, "codes");
    if (!is_block_format(index)) {
        check_len(out.size(), codes.size(), "packed codes");
        std::memcpy(out.data(), codes.data(), codes.size());
        return;
    }
    const auto* fs = dynamic_cast<const faiss::IndexIVFPQFastScan*>(&ivf);
    if (!fs || fs->bbs <= 0) {
        fail(ErrorKind::Unsupported, "block lists of " + name_of(&ivf) + " cannot be packed");
    }
    const size_t bbs = size_t(fs->bbs);
    const size_t nb = (n + bbs - 1) / bbs * bbs;
    check_len(out.size(), nb * size_t(fs->M2) / 2, "packed codes");
    faiss::pq4_pack_codes(codes.data(), n, fs->M, nb, bbs, fs->M2, out.data());
}

size_t remove_ids(IvfIndex& index, rust::Slice<const int64_t> ids) {
    if (index.lazy) {
        fail(ErrorKind::InvalidArgument, "indexes served from object storage are read-only");
    }
    const faiss::IDSelectorBatch sel(ids.size(), ids.data());
    return index.owner->remove_ids(sel);
}

std::unique_ptr<std::vector<uint8_t>> write_index_bytes(const IvfIndex& index) {
    if (index.lazy) {
        fail(ErrorKind::InvalidArgument, "a lazily opened index holds no list data to write");
    }
    faiss::VectorIOWriter writer;
    faiss::write_index(index.owner.get(), &writer);
    return std::make_unique<std::vector<uint8_t>>(std::move(writer.data));
}

}  // namespace ivflake
