// ivflake's C++ shim over Faiss: searching. The coarse quantizer and the
// pre-transform run as Faiss runs them; lists are scanned by Faiss's own
// `search_preassigned` over the caller's fetched buffers, which the lazy
// inverted lists hand out through a table private to the calling thread.

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/utils/AlignedTable.h>
#include <faiss/utils/Heap.h>

#include "internal.h"
#include "ivflake-faiss/src/lib.rs.h"

namespace ivflake {

// Above this k a layer's tombstones are a selector, not a filter of its
// best 2k (whose buffers would grow with k).
constexpr size_t MAX_POST_FILTER_K = 1024;

// Sorted ids with a bloom filter at their low bits, both built once by the
// caller (`hidden_bloom`): membership is a bit test, then a binary search
// for the ids that pass it. Nothing is copied or hashed per scan, unlike
// IDSelectorBatch, which builds a hash set of every id each time.
struct SortedIds : faiss::IDSelector {
    const int64_t* ids;
    size_t n;
    const uint64_t* bloom;
    uint64_t mask;

    SortedIds(rust::Slice<const int64_t> sorted, rust::Slice<const uint64_t> bits)
            : ids(sorted.data()),
              n(sorted.size()),
              bloom(bits.data()),
              mask(bits.empty() ? 0 : bits.size() * 64 - 1) {
        // A bloom whose size is not a power of two cannot be read at low bits.
        if (!bits.empty() && (bits.size() & (bits.size() - 1)) != 0) {
            bloom = nullptr;
            mask = 0;
        }
    }

    bool is_member(idx_t id) const override {
        if (bloom) {
            const uint64_t b = uint64_t(id) & mask;
            if (!((bloom[b >> 6] >> (b & 63)) & 1)) {
                return false;
            }
        }
        return std::binary_search(ids, ids + n, int64_t(id));
    }
};

namespace {

// The table of the scan running on this thread. Faiss's OpenMP is held to
// one thread during a scan, so every call Faiss makes into the lists comes
// from this thread while the table is set.
thread_local const ScanTable* t_scan = nullptr;

// The Faiss IDSelector for a filter, owning the selectors it is made of. The
// ids stay borrowed from the caller's slice for the duration of one call.
class Selector {
   public:
    explicit Selector(const FilterSpec& filter) {
        switch (filter.kind) {
            case FilterKind::All:
                break;
            case FilterKind::Allow:
                top_ = std::make_unique<faiss::IDSelectorBatch>(
                        filter.ids.size(), filter.ids.data());
                break;
            case FilterKind::Deny:
                inner_ = std::make_unique<faiss::IDSelectorBatch>(
                        filter.ids.size(), filter.ids.data());
                top_ = std::make_unique<faiss::IDSelectorNot>(inner_.get());
                break;
            case FilterKind::Range:
                top_ = std::make_unique<faiss::IDSelectorRange>(
                        filter.start, filter.end);
                break;
            default:
                fail(ErrorKind::InvalidArgument, "ivflake shim: unknown filter kind");
        }
    }
    // Null when every id passes, which is how Faiss spells "no filter".
    faiss::IDSelector* get() const {
        return top_.get();
    }

   private:
    std::unique_ptr<faiss::IDSelector> inner_;
    std::unique_ptr<faiss::IDSelector> top_;
};

[[noreturn]] void not_resident(size_t list_no) {
    fail(ErrorKind::Other,
         "ivflake: list " + std::to_string(list_no) +
                 " is not among the buffers of this scan (a bug: unfetched lists "
                 "must be masked from the coarse assignment)");
}

[[noreturn]] void read_only() {
    fail(ErrorKind::InvalidArgument,
         "ivflake: indexes served from object storage are read-only");
}

size_t expected_codes(const IvfIndex& index, size_t n) {
    if (index.list_format == ListFormat::Blocks) {
        return (n + index.n_per_block - 1) / index.n_per_block * index.block_size;
    }
    return n * index.ivf->code_size;
}

}  // namespace

int64_t ScanTable::find(size_t list_no) const {
    auto it = std::lower_bound(
            slot_of_list.begin(),
            slot_of_list.end(),
            std::make_pair(list_no, uint32_t(0)));
    if (it == slot_of_list.end() || it->first != list_no) {
        return -1;
    }
    return it->second;
}

LazyInvertedLists::Scope::Scope(const ScanTable* table) {
    t_scan = table;
}
LazyInvertedLists::Scope::~Scope() {
    t_scan = nullptr;
}

int64_t LazyInvertedLists::entry(size_t list_no) const {
    if (t_scan == nullptr || t_scan->owner != this) {
        return -1;
    }
    return t_scan->find(list_no);
}

size_t LazyInvertedLists::list_size(size_t list_no) const {
    const int64_t e = entry(list_no);
    if (e >= 0) {
        return t_scan->sizes[e];
    }
    if (t_scan == nullptr && list_no < header_sizes.size()) {
        return header_sizes[list_no];
    }
    not_resident(list_no);
}

const uint8_t* LazyInvertedLists::get_codes(size_t list_no) const {
    const int64_t e = entry(list_no);
    if (e < 0) {
        not_resident(list_no);
    }
    return t_scan->codes[e];
}

const idx_t* LazyInvertedLists::get_ids(size_t list_no) const {
    const int64_t e = entry(list_no);
    if (e < 0) {
        not_resident(list_no);
    }
    return t_scan->ids[e];
}

size_t LazyInvertedLists::add_entries(size_t, size_t, const idx_t*, const uint8_t*) {
    read_only();
}
void LazyInvertedLists::update_entries(
        size_t,
        size_t,
        size_t,
        const idx_t*,
        const uint8_t*) {
    read_only();
}
void LazyInvertedLists::resize(size_t, size_t) {
    read_only();
}

void apply_transform(
        const IvfIndex& index,
        size_t n,
        rust::Slice<const float> x,
        rust::Slice<float> out) {
    single_threaded();
    if (!index.transform) {
        fail(ErrorKind::InvalidArgument, "index has no pre-transform");
    }
    check_len(x.size(), n * size_t(index.top->d), "queries");
    check_len(out.size(), n * size_t(require_ivf(index).d), "transformed queries");
    const float* xt = index.transform->apply_chain(idx_t(n), x.data());
    std::memcpy(out.data(), xt, out.size() * sizeof(float));
    if (xt != x.data()) {
        delete[] xt;
    }
}

// An HNSW walk never ends once a distance is NaN. Queries are finite when
// callers pass them, but a pre-transform can overflow them, and an inner
// product of huge values can be inf - inf: so the transformed queries must be
// finite, and for inner product small enough that no product with a centroid
// (at most centroid_max_abs) summed over d overflows.
static void check_coarse_queries(const IvfIndex& index, rust::Slice<const float> x) {
    const auto* hnsw = dynamic_cast<const faiss::IndexHNSW*>(index.ivf->quantizer);
    if (!hnsw) {
        return;
    }
    const size_t d = size_t(index.ivf->d);
    const float limit = hnsw->metric_type == faiss::METRIC_INNER_PRODUCT
            ? std::numeric_limits<float>::max() / 4 / float(d) /
                    std::max(1.0f, index.centroid_max_abs)
            : std::numeric_limits<float>::max();
    for (size_t i = 0; i < x.size(); i++) {
        if (!std::isfinite(x[i]) || std::fabs(x[i]) > limit) {
            fail(ErrorKind::InvalidArgument,
                 "query " + std::to_string(i / d) + " is " + std::to_string(x[i]) +
                         " at dimension " + std::to_string(i % d) +
                         " after its pre-transform; this index's HNSW quantizer takes values up to " +
                         std::to_string(limit));
        }
    }
}

void coarse_search(
        const IvfIndex& index,
        size_t n,
        rust::Slice<const float> x,
        size_t nprobe,
        rust::Slice<float> coarse_dis,
        rust::Slice<int64_t> assign) {
    single_threaded();
    const auto& ivf = require_ivf(index);
    check_len(x.size(), n * size_t(ivf.d), "queries");
    check_len(coarse_dis.size(), n * nprobe, "coarse distances");
    check_len(assign.size(), n * nprobe, "coarse assignment");
    check_coarse_queries(index, x);
    ivf.quantizer->search(
            idx_t(n), x.data(), idx_t(nprobe), coarse_dis.data(), assign.data());
}

// Faiss's own IndexIVF::search_preassigned (or the fast-scan override) over
// buffers ivflake fetched: the same code the in-memory index runs after its
// quantizer, so results are bit-identical to Faiss searching the file.
void scan_lists(
        const IvfIndex& index,
        const ScanRequest& request,
        rust::Slice<float> distances,
        rust::Slice<int64_t> labels) {
    single_threaded();
    const auto& ivf = require_ivf(index);
    auto* lazy = dynamic_cast<const LazyInvertedLists*>(ivf.invlists);
    if (!index.lazy || !lazy) {
        fail(ErrorKind::InvalidArgument, "scan_lists needs an index opened with open_header");
    }
    const size_t d = size_t(ivf.d);
    const size_t nprobe = request.nprobe;
    const size_t k = request.k;
    if (d == 0 || request.queries.size() % d != 0 || k == 0 || nprobe == 0 ||
        nprobe > ivf.nlist) {
        fail(ErrorKind::InvalidArgument, "scan request: bad queries, k or nprobe");
    }
    const size_t n = request.queries.size() / d;
    check_len(request.lists.size(), n * nprobe, "coarse assignment");
    check_len(request.coarse_distances.size(), n * nprobe, "coarse distances");
    check_len(distances.size(), n * k, "distances");
    check_len(labels.size(), n * k, "labels");
    const size_t nlayers = request.layers.size();
    if (nlayers == 0) {
        fail(ErrorKind::InvalidArgument, "scan request: no layers");
    }
    for (const ScanLayer& layer : request.layers) {
        check_len(layer.slots.size(), n * nprobe, "list slots");
    }
    for (const int64_t key : request.lists) {
        if (key >= 0 && size_t(key) >= ivf.nlist) {
            fail(ErrorKind::InvalidArgument, "list " + std::to_string(key) + " out of range");
        }
    }

    // Check every buffer against the format; fast-scan kernels load codes
    // with aligned 32-byte loads, so misaligned block codes are copied.
    const size_t nbuf = request.buffers.size();
    const size_t align = index.list_format == ListFormat::Blocks ? 32 : 4;
    std::vector<const uint8_t*> codes_of(nbuf);
    std::vector<faiss::AlignedTable<uint8_t>> copies;
    // Never reallocated: codes_of points into its elements.
    copies.reserve(nbuf);
    for (size_t b = 0; b < nbuf; b++) {
        const ListBuffer& buf = request.buffers[b];
        const size_t size = buf.ids.size();
        if (buf.codes.size() != expected_codes(index, size)) {
            fail(ErrorKind::InvalidArgument,
                 "list slot " + std::to_string(b) + ": " +
                         std::to_string(buf.codes.size()) + " code bytes for " +
                         std::to_string(size) + " ids, expected " +
                         std::to_string(expected_codes(index, size)));
        }
        const uint8_t* codes = buf.codes.data();
        if (reinterpret_cast<uintptr_t>(codes) % align != 0) {
            if (align == 4) {
                fail(ErrorKind::InvalidArgument,
                     "list slot " + std::to_string(b) + ": codes are not 4-byte aligned");
            }
            copies.emplace_back(buf.codes.size());
            std::memcpy(copies.back().get(), codes, buf.codes.size());
            codes = copies.back().get();
        }
        codes_of[b] = codes;
    }

    // One layer writes straight into the output: exactly Faiss's search.
    // More are each scanned into their own top k, then merged as
    // IndexShards merges its shards.
    std::vector<float> layer_distances(nlayers > 1 ? nlayers * n * k : 0);
    std::vector<idx_t> layer_labels(nlayers > 1 ? nlayers * n * k : 0);
    const Selector filter(request.filter);
    for (size_t l = 0; l < nlayers; l++) {
        const ScanLayer& layer = request.layers[l];
        ScanTable table;
        table.owner = lazy;
        // Probes without a buffer in this layer are masked out of the
        // assignment (Faiss skips negative keys); the others map to their
        // buffer, one buffer per list.
        std::vector<idx_t> keys(request.lists.begin(), request.lists.end());
        table.slot_of_list.reserve(keys.size());
        for (size_t p = 0; p < keys.size(); p++) {
            const int32_t slot = layer.slots[p];
            if (keys[p] < 0 || slot < 0) {
                keys[p] = -1;
                continue;
            }
            if (size_t(slot) >= nbuf) {
                fail(ErrorKind::InvalidArgument, "list slot " + std::to_string(slot) + " out of range");
            }
            table.slot_of_list.emplace_back(size_t(keys[p]), uint32_t(slot));
        }
        std::sort(table.slot_of_list.begin(), table.slot_of_list.end());
        table.slot_of_list.erase(
                std::unique(table.slot_of_list.begin(), table.slot_of_list.end()),
                table.slot_of_list.end());
        for (size_t i = 1; i < table.slot_of_list.size(); i++) {
            if (table.slot_of_list[i].first == table.slot_of_list[i - 1].first) {
                fail(ErrorKind::InvalidArgument,
                     "list " + std::to_string(table.slot_of_list[i].first) +
                             " is given two different buffers in one layer");
            }
        }
        table.codes.reserve(table.slot_of_list.size());
        for (auto& entry : table.slot_of_list) {
            const uint32_t b = entry.second;
            entry.second = uint32_t(table.codes.size());
            table.codes.push_back(codes_of[b]);
            table.ids.push_back(request.buffers[b].ids.data());
            table.sizes.push_back(request.buffers[b].ids.size());
        }

        float* out_d = nlayers > 1 ? layer_distances.data() + l * n * k : distances.data();
        idx_t* out_l = nlayers > 1 ? layer_labels.data() + l * n * k : labels.data();
        LazyInvertedLists::Scope scope(&table);
        // Queries [first, first + count) into their top `kk`, with `sel`.
        auto search = [&](size_t first, size_t count, size_t kk, const faiss::IDSelector* sel, float* dist, idx_t* lab) {
            faiss::SearchParametersIVF params;
            params.nprobe = nprobe;
            params.sel = const_cast<faiss::IDSelector*>(sel);
            ivf.search_preassigned(
                    idx_t(count),
                    request.queries.data() + first * d,
                    idx_t(kk),
                    keys.data() + first * nprobe,
                    request.coarse_distances.data() + first * nprobe,
                    dist,
                    lab,
                    false,
                    &params);
        };
        if (layer.hidden.empty()) {
            search(0, n, k, filter.get(), out_d, out_l);
            continue;
        }
        // The layer's tombstones hide ids on top of the caller's filter.
        // Testing each entry scanned would cost a lookup per entry; the
        // layer's best k + `extra` are kept instead and the hidden ones
        // dropped from those. A query left with fewer than k, whose lists
        // held more, is scanned again with the tombstones as a selector:
        // either way its top k are those of the entries not hidden.
        const SortedIds hidden(layer.hidden, layer.hidden_bloom);
        const faiss::IDSelectorNot not_hidden(&hidden);
        std::unique_ptr<faiss::IDSelectorAnd> both;
        const faiss::IDSelector* strict = &not_hidden;
        if (filter.get()) {
            both = std::make_unique<faiss::IDSelectorAnd>(filter.get(), &not_hidden);
            strict = both.get();
        }
        if (k > MAX_POST_FILTER_K) {
            search(0, n, k, strict, out_d, out_l);
            continue;
        }
        const size_t wide = k + std::max<size_t>(k, 16);
        std::vector<float> wide_d(n * wide);
        std::vector<idx_t> wide_l(n * wide);
        search(0, n, wide, filter.get(), wide_d.data(), wide_l.data());
        for (size_t q = 0; q < n; q++) {
            const float* wd = wide_d.data() + q * wide;
            const idx_t* wl = wide_l.data() + q * wide;
            size_t kept = 0;
            size_t j = 0;
            for (; j < wide && wl[j] >= 0 && kept < k; j++) {
                if (!hidden.is_member(wl[j])) {
                    out_d[q * k + kept] = wd[j];
                    out_l[q * k + kept] = wl[j];
                    kept++;
                }
            }
            if (kept < k && j == wide) {
                search(q, 1, k, strict, out_d + q * k, out_l + q * k);
                continue;
            }
            // Fewer entries than k passed: pad as Faiss does (the empty
            // slot's distance, at the first -1 the wide scan left).
            for (; kept < k; kept++) {
                out_d[q * k + kept] = wd[std::min(j, wide - 1)];
                out_l[q * k + kept] = -1;
            }
        }
    }
    if (nlayers > 1) {
        // merge_knn_results' comparator is reversed: the best result on top.
        if (ivf.metric_type == faiss::METRIC_L2) {
            faiss::merge_knn_results<idx_t, faiss::CMin<float, int>>(
                    n, k, int(nlayers), layer_distances.data(), layer_labels.data(),
                    distances.data(), labels.data());
        } else {
            faiss::merge_knn_results<idx_t, faiss::CMax<float, int>>(
                    n, k, int(nlayers), layer_distances.data(), layer_labels.data(),
                    distances.data(), labels.data());
        }
    }
}

void search_full(
        const IvfIndex& index,
        rust::Slice<const float> x,
        size_t k,
        size_t nprobe,
        float k_factor,
        const FilterSpec& filter,
        rust::Slice<float> distances,
        rust::Slice<int64_t> labels) {
    single_threaded();
    const size_t d = size_t(index.top->d);
    if (d == 0 || x.size() % d != 0) {
        fail(ErrorKind::InvalidArgument, "queries are not whole vectors");
    }
    const size_t n = x.size() / d;
    check_len(distances.size(), n * k, "distances");
    check_len(labels.size(), n * k, "labels");
    if (index.lazy) {
        fail(ErrorKind::InvalidArgument, "search_full needs a fully loaded index");
    }
    const Selector selector(filter);
    if (index.full_wrapper) {
        search_wrapped(index, n, x.data(), k, nprobe, k_factor, selector.get(),
                       distances.data(), labels.data());
        return;
    }
    if (!index.ivf) {
        faiss::SearchParameters params;
        params.sel = selector.get();
        index.top->search(
                idx_t(n), x.data(), idx_t(k), distances.data(), labels.data(), &params);
        return;
    }
    const float* xt = x.data();
    std::unique_ptr<const float[]> owned;
    if (index.transform) {
        xt = index.transform->apply_chain(idx_t(n), x.data());
        if (xt != x.data()) {
            owned.reset(xt);
        }
    }
    faiss::SearchParametersIVF params;
    params.nprobe = nprobe;
    params.sel = selector.get();
    index.ivf->search(idx_t(n), xt, idx_t(k), distances.data(), labels.data(), &params);
}

}  // namespace ivflake
