// ivflake's C++ shim over Faiss: building indexes (the `build`, `bench` and
// `demo` commands and tests). Nothing here runs while serving.

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <faiss/IndexIVFPQFastScan.h>
#include <faiss/invlists/InvertedLists.h>
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

// The bytes Faiss writes for this index holding lists of `sizes`, up to
// where the lists' data starts: the caller streams each non-empty list's
// codes then ids after it, in list order (ArrayInvertedLists' layout), so
// a compaction writes a standard file holding one list at a time. Faiss
// writes the header itself, from a copy of the lists' sizes alone.
std::unique_ptr<std::vector<uint8_t>> write_header(IvfIndex& index, rust::Slice<const uint64_t> sizes) {
    if (!index.ivf || index.list_format != ListFormat::Array || index.refine_codec || index.id_map) {
        fail(ErrorKind::Unsupported,
             "only unwrapped IVF indexes with array lists are written list by list");
    }
    faiss::IndexIVF& ivf = *index.ivf;
    check_len(sizes.size(), ivf.nlist, "list sizes");
    uint64_t ntotal = 0;
    size_t non_empty = 0;
    for (uint64_t size : sizes) {
        if (size > (uint64_t(1) << 40) || ntotal + size < ntotal) {
            fail(ErrorKind::InvalidArgument, "list sizes past 2^40 entries");
        }
        ntotal += size;
        non_empty += size > 0;
    }
    // Faiss writes an empty ArrayInvertedLists as "ilar" nlist code_size
    // "sprs" and an empty vector: the sizes are put in their place.
    faiss::ArrayInvertedLists empty(ivf.nlist, ivf.code_size);
    faiss::InvertedLists* lists = ivf.invlists;
    const idx_t top_ntotal = index.top->ntotal;
    const idx_t ivf_ntotal = ivf.ntotal;
    auto restore = [&] {
        ivf.invlists = lists;
        ivf.ntotal = ivf_ntotal;
        index.top->ntotal = top_ntotal;
    };
    ivf.invlists = &empty;
    ivf.ntotal = idx_t(ntotal);
    index.top->ntotal = idx_t(ntotal);
    faiss::VectorIOWriter writer;
    try {
        faiss::write_index(index.top, &writer);
    } catch (...) {
        restore();
        throw;
    }
    restore();
    auto& out = writer.data;
    const size_t tail = 4 + 8;
    uint32_t kind = 0;
    uint64_t count = 1;
    if (out.size() >= tail) {
        std::memcpy(&kind, out.data() + out.size() - tail, 4);
        std::memcpy(&count, out.data() + out.size() - 8, 8);
    }
    if (kind != fourcc("sprs") || count != 0) {
        fail(ErrorKind::Other, "Faiss wrote empty lists in a layout this build does not know");
    }
    out.resize(out.size() - tail);
    auto put = [&](uint64_t v) {
        const auto* b = reinterpret_cast<const uint8_t*>(&v);
        out.insert(out.end(), b, b + 8);
    };
    // As Faiss chooses: "full" when more than half the lists hold entries.
    const bool full = non_empty > ivf.nlist / 2;
    const uint32_t tag = fourcc(full ? "full" : "sprs");
    const auto* t = reinterpret_cast<const uint8_t*>(&tag);
    out.insert(out.end(), t, t + 4);
    put(full ? sizes.size() : 2 * non_empty);
    for (size_t i = 0; i < sizes.size(); i++) {
        if (full) {
            put(sizes[i]);
        } else if (sizes[i] > 0) {
            put(i);
            put(sizes[i]);
        }
    }
    return std::make_unique<std::vector<uint8_t>>(std::move(out));
}

}  // namespace ivflake
