// ivflake's C++ shim over Faiss. It owns three tricks, each explained where
// it lives: a prefix reader that parses an index header without list data, an
// inverted-lists hook that records where list data starts, and a per-thread
// allocation cap that keeps a corrupt header from asking for terabytes.

#include "shim.h"

#include <cxxabi.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <typeinfo>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/invlists/InvertedListsIOHook.h>
#include <faiss/utils/Heap.h>

#include "ivflake-faiss/src/lib.rs.h"

// ---------------------------------------------------------------------------
// Allocation cap. Faiss's READVECTOR resizes a vector to a length read from
// the file *before* reading its bytes, so a corrupt length field could ask
// for any size. While a header is parsed, this thread refuses any single
// allocation above the cap (a few times the file's size), turning such a
// field into an ordinary error instead of an OOM kill.
// ---------------------------------------------------------------------------
namespace {
thread_local size_t t_alloc_cap = 0;

struct AllocationRefused : std::bad_alloc {
    const char* what() const noexcept override {
        return "index header asks for an allocation larger than the file could "
               "hold: the file is corrupt";
    }
};

struct AllocCapGuard {
    explicit AllocCapGuard(size_t cap) { t_alloc_cap = cap; }
    ~AllocCapGuard() { t_alloc_cap = 0; }
};
}  // namespace

void* operator new(std::size_t size) {
    if (t_alloc_cap != 0 && size > t_alloc_cap) {
        throw AllocationRefused();
    }
    void* p = std::malloc(size == 0 ? 1 : size);
    if (p == nullptr) {
        throw std::bad_alloc();
    }
    return p;
}
void* operator new[](std::size_t size) {
    return ::operator new(size);
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}

// OpenBLAS's own thread pool fights OpenMP's for the same cores (an OPQ
// build ran 3x slower here). Weak, so other BLAS builds still link.
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

namespace ivflake {
namespace {

// Faiss parallelises with OpenMP; BLAS calls inside it stay single-threaded.
const bool kBlasSingleThreaded = [] {
    if (openblas_set_num_threads != nullptr) {
        openblas_set_num_threads(1);
    }
    return true;
}();

// Faiss 1.7 spells it Index::idx_t, later versions faiss::idx_t; both are int64_t.
using idx_t = int64_t;

// Faiss's OpenMP loops would oversubscribe the compute pool that calls us:
// parallelism comes from running many searches at once instead.
void single_threaded() {
    omp_set_num_threads(1);
}

// Building an index is a batch job with the machine to itself.
void all_cores() {
    omp_set_num_threads(omp_get_num_procs());
}

// Thrown (not a std::exception, so nothing in Faiss swallows it) when the
// parser runs past the prefix we have; the caller fetches more and retries.
struct NeedMoreBytes {
    uint64_t end;
};

struct PrefixReader : faiss::IOReader {
    const uint8_t* data;
    size_t len;
    uint64_t file_len;
    size_t pos = 0;

    PrefixReader(const uint8_t* data, size_t len, uint64_t file_len)
            : data(data), len(len), file_len(file_len) {
        name = "ivflake-prefix";
    }

    size_t operator()(void* ptr, size_t size, size_t nitems) override {
        size_t bytes = 0;
        uint64_t end = 0;
        if (__builtin_mul_overflow(size, nitems, &bytes) ||
            __builtin_add_overflow(uint64_t(pos), uint64_t(bytes), &end)) {
            throw std::runtime_error(
                    "corrupt index header: a field's length overflows");
        }
        if (end > file_len) {
            throw std::runtime_error(
                    "index file is truncated or corrupt: its header needs " +
                    std::to_string(end) + " bytes but the file has " +
                    std::to_string(file_len));
        }
        if (end > len) {
            throw NeedMoreBytes{end};
        }
        if (bytes > 0) {
            std::memcpy(ptr, data + pos, bytes);
        }
        pos = end;
        return nitems;
    }
};

// Inverted lists whose data stays in the object store. Faiss sees the list
// sizes; any attempt to read codes through Faiss (instead of through ivflake's
// fetched buffers) is a bug and fails loudly.
struct LazyInvertedLists : faiss::InvertedLists {
    std::vector<size_t> sizes;
    uint64_t data_offset;

    LazyInvertedLists(
            size_t nlist,
            size_t code_size,
            std::vector<size_t> sizes,
            uint64_t data_offset)
            : faiss::InvertedLists(nlist, code_size),
              sizes(std::move(sizes)),
              data_offset(data_offset) {}

    size_t list_size(size_t list_no) const override {
        FAISS_THROW_IF_NOT(list_no < sizes.size());
        return sizes[list_no];
    }
    const uint8_t* get_codes(size_t) const override {
        FAISS_THROW_MSG("ivflake: list data is not resident; scan fetched buffers");
    }
    const idx_t* get_ids(size_t) const override {
        FAISS_THROW_MSG("ivflake: list data is not resident; scan fetched buffers");
    }
    size_t add_entries(size_t, size_t, const idx_t*, const uint8_t*) override {
        FAISS_THROW_MSG("ivflake: indexes served from object storage are read-only");
    }
    void update_entries(size_t, size_t, size_t, const idx_t*, const uint8_t*)
            override {
        FAISS_THROW_MSG("ivflake: indexes served from object storage are read-only");
    }
    void resize(size_t, size_t) override {
        FAISS_THROW_MSG("ivflake: indexes served from object storage are read-only");
    }
};

// Faiss calls this hook, instead of reading list data, when io_flags carry
// IO_FLAG_SKIP_IVF_DATA and our fourcc's upper half. At that moment the reader
// stands exactly at the first byte of list data.
struct LazyListsHook : faiss::InvertedListsIOHook {
    LazyListsHook()
            : faiss::InvertedListsIOHook(
                      "ilfk",
                      typeid(LazyInvertedLists).name()) {}

    void write(const faiss::InvertedLists*, faiss::IOWriter*) const override {
        FAISS_THROW_MSG("ivflake: lazy inverted lists cannot be written");
    }
    faiss::InvertedLists* read(faiss::IOReader*, int) const override {
        FAISS_THROW_MSG("ivflake: 'ilfk' is not an on-disk format");
    }
    faiss::InvertedLists* read_ArrayInvertedLists(
            faiss::IOReader* f,
            int,
            size_t nlist,
            size_t code_size,
            const std::vector<size_t>& sizes) const override {
        auto* reader = dynamic_cast<PrefixReader*>(f);
        FAISS_THROW_IF_NOT_MSG(reader, "ivflake: lazy open needs its own reader");
        return new LazyInvertedLists(nlist, code_size, sizes, reader->pos);
    }
};

uint32_t fourcc(const char* s) {
    return uint32_t(uint8_t(s[0])) | uint32_t(uint8_t(s[1])) << 8 |
            uint32_t(uint8_t(s[2])) << 16 | uint32_t(uint8_t(s[3])) << 24;
}

int lazy_io_flags() {
    static std::once_flag once;
    std::call_once(once, [] {
        faiss::InvertedListsIOHook::add_callback(new LazyListsHook());
    });
    return faiss::IO_FLAG_SKIP_IVF_DATA | faiss::IO_FLAG_SKIP_PRECOMPUTE_TABLE |
            int(fourcc("ilfk") & 0xffff0000u);
}

std::string class_name(const void* obj, const std::type_info& ti) {
    (void)obj;
    int status = 0;
    char* demangled = abi::__cxa_demangle(ti.name(), nullptr, nullptr, &status);
    std::string name = status == 0 && demangled ? demangled : ti.name();
    std::free(demangled);
    const std::string prefix = "faiss::";
    if (name.compare(0, prefix.size(), prefix) == 0) {
        name = name.substr(prefix.size());
    }
    return name;
}

template <typename T>
std::string name_of(const T* obj) {
    return class_name(obj, typeid(*obj));
}

bool is_supported_ivf(const faiss::IndexIVF* ivf) {
    const std::type_info& t = typeid(*ivf);
    return t == typeid(faiss::IndexIVFFlat) || t == typeid(faiss::IndexIVFPQ) ||
            t == typeid(faiss::IndexIVFScalarQuantizer);
}

// Fills the views of `out` and refuses anything but the supported shapes.
void classify(IvfIndex& out) {
    faiss::Index* inner = out.top.get();
    out.transform = dynamic_cast<faiss::IndexPreTransform*>(inner);
    if (out.transform) {
        inner = out.transform->index;
        FAISS_THROW_IF_NOT_MSG(inner, "IndexPreTransform without a sub-index");
    }
    out.ivf = dynamic_cast<faiss::IndexIVF*>(inner);
    if (!out.ivf) {
        throw std::runtime_error(
                "unsupported index type " + name_of(inner) +
                ": ivflake serves IndexIVFFlat, IndexIVFPQ and "
                "IndexIVFScalarQuantizer, optionally under an IndexPreTransform");
    }
    if (!is_supported_ivf(out.ivf)) {
        throw std::runtime_error(
                "unsupported IVF index type " + name_of(out.ivf) +
                ": its lists are not plain array lists ivflake can range-read "
                "(supported: IndexIVFFlat, IndexIVFPQ, IndexIVFScalarQuantizer)");
    }
    if (out.ivf->metric_type != faiss::METRIC_L2 &&
        out.ivf->metric_type != faiss::METRIC_INNER_PRODUCT) {
        throw std::runtime_error(
                "unsupported metric " + std::to_string(out.ivf->metric_type) +
                ": ivflake supports METRIC_L2 and METRIC_INNER_PRODUCT");
    }
    FAISS_THROW_IF_NOT_MSG(out.ivf->quantizer, "IVF index without a quantizer");
    FAISS_THROW_IF_NOT_MSG(out.ivf->is_trained, "IVF index is not trained");
}

std::string describe(const IvfIndex& index) {
    std::string s;
    if (index.transform) {
        for (const auto* vt : index.transform->chain) {
            s += name_of(vt) + ",";
        }
    }
    if (index.ivf) {
        s += name_of(index.ivf);
        s += "[" + name_of(index.ivf->quantizer) + "]";
    } else {
        s += name_of(index.top.get());
    }
    return s;
}

void check_len(size_t got, size_t want, const char* what) {
    if (got != want) {
        throw std::invalid_argument(
                std::string("ivflake shim: ") + what + " has length " +
                std::to_string(got) + ", expected " + std::to_string(want));
    }
}

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
                throw std::invalid_argument("ivflake shim: unknown filter kind");
        }
    }
    // Null when every id passes, which is how Faiss spells "no filter".
    faiss::IDSelector* get() const { return top_.get(); }

   private:
    std::unique_ptr<faiss::IDSelector> inner_;
    std::unique_ptr<faiss::IDSelector> top_;
};

const faiss::IndexIVF& require_ivf(const IvfIndex& index) {
    FAISS_THROW_IF_NOT_MSG(index.ivf, "not an IVF index");
    return *index.ivf;
}

}  // namespace

std::unique_ptr<IvfIndex> open_header(
        rust::Slice<const uint8_t> prefix,
        uint64_t file_len,
        size_t alloc_cap,
        uint64_t& needed) {
    needed = 0;
    int flags = lazy_io_flags();
    PrefixReader reader(prefix.data(), prefix.size(), file_len);
    auto out = std::make_unique<IvfIndex>();
    try {
        AllocCapGuard guard(alloc_cap);
        out->top.reset(faiss::read_index(&reader, flags));
    } catch (const NeedMoreBytes& more) {
        needed = more.end;
        return nullptr;
    }
    classify(*out);
    auto* lazy = dynamic_cast<LazyInvertedLists*>(out->ivf->invlists);
    if (!lazy) {
        throw std::runtime_error(
                "index " + name_of(out->ivf) + " stores its lists as " +
                (out->ivf->invlists ? name_of(out->ivf->invlists)
                                    : std::string("nothing")) +
                ", not Faiss's array lists; ivflake cannot range-read them");
    }
    out->lazy = true;
    out->lazy_sizes = lazy->sizes;
    out->list_data_offset = lazy->data_offset;
    // Read with IO_FLAG_SKIP_PRECOMPUTE_TABLE so the table is built here,
    // outside the allocation cap; Faiss bounds it by precomputed_table_max_bytes.
    if (auto* pq = dynamic_cast<faiss::IndexIVFPQ*>(out->ivf)) {
        if (pq->by_residual && pq->precomputed_table.size() == 0) {
            pq->precompute_table();
        }
    }
    return out;
}

std::unique_ptr<IvfIndex> read_index_bytes(rust::Slice<const uint8_t> bytes) {
    PrefixReader reader(bytes.data(), bytes.size(), bytes.size());
    auto out = std::make_unique<IvfIndex>();
    {
        AllocCapGuard guard(bytes.size() * 2 + (size_t(256) << 20));
        out->top.reset(faiss::read_index(&reader, 0));
    }
    classify(*out);
    return out;
}

IndexInfo info(const IvfIndex& index) {
    IndexInfo i;
    i.type_name = describe(index);
    i.d = size_t(index.top->d);
    i.ivf_d = index.ivf ? size_t(index.ivf->d) : i.d;
    i.metric_l2 = index.top->metric_type == faiss::METRIC_L2;
    i.ntotal = index.top->ntotal;
    i.nlist = index.ivf ? index.ivf->nlist : 0;
    i.code_size = index.ivf ? index.ivf->code_size : 0;
    i.default_nprobe = index.ivf ? index.ivf->nprobe : 0;
    i.has_transform = index.transform != nullptr;
    i.list_data_offset = index.list_data_offset;
    return i;
}

rust::Vec<uint64_t> list_sizes(const IvfIndex& index) {
    rust::Vec<uint64_t> out;
    if (index.lazy) {
        out.reserve(index.lazy_sizes.size());
        for (size_t s : index.lazy_sizes) {
            out.push_back(s);
        }
    } else if (index.ivf) {
        out.reserve(index.ivf->nlist);
        for (size_t l = 0; l < index.ivf->nlist; l++) {
            out.push_back(index.ivf->invlists->list_size(l));
        }
    }
    return out;
}

void apply_transform(
        const IvfIndex& index,
        size_t n,
        rust::Slice<const float> x,
        rust::Slice<float> out) {
    single_threaded();
    FAISS_THROW_IF_NOT_MSG(index.transform, "index has no pre-transform");
    check_len(x.size(), n * size_t(index.top->d), "queries");
    check_len(out.size(), n * size_t(require_ivf(index).d), "transformed queries");
    const float* xt = index.transform->apply_chain(idx_t(n), x.data());
    std::memcpy(out.data(), xt, out.size() * sizeof(float));
    if (xt != x.data()) {
        delete[] xt;
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
    ivf.quantizer->search(
            idx_t(n), x.data(), idx_t(nprobe), coarse_dis.data(), assign.data());
}

// The body of Faiss's IndexIVF::search_preassigned for one thread, over
// buffers ivflake fetched: same scanner, same heap, same probe order, so the
// results are bit-identical to Faiss searching the file in memory.
void scan_lists(
        const IvfIndex& index,
        size_t n,
        rust::Slice<const float> xt,
        size_t k,
        size_t nprobe,
        rust::Slice<const int64_t> assign,
        rust::Slice<const float> coarse_dis,
        rust::Slice<const int32_t> slots,
        rust::Slice<const size_t> codes_addr,
        rust::Slice<const size_t> ids_addr,
        rust::Slice<const size_t> sizes,
        const FilterSpec& filter,
        rust::Slice<float> distances,
        rust::Slice<int64_t> labels) {
    single_threaded();
    const auto& ivf = require_ivf(index);
    check_len(xt.size(), n * size_t(ivf.d), "queries");
    check_len(assign.size(), n * nprobe, "coarse assignment");
    check_len(coarse_dis.size(), n * nprobe, "coarse distances");
    check_len(slots.size(), n * nprobe, "list slots");
    check_len(ids_addr.size(), codes_addr.size(), "list id pointers");
    check_len(sizes.size(), codes_addr.size(), "list sizes");
    check_len(distances.size(), n * k, "distances");
    check_len(labels.size(), n * k, "labels");

    const Selector selector(filter);
    std::unique_ptr<faiss::InvertedListScanner> scanner(
            ivf.get_InvertedListScanner(false, selector.get()));
    const bool ip = ivf.metric_type == faiss::METRIC_INNER_PRODUCT;
    for (size_t i = 0; i < n; i++) {
        float* simi = distances.data() + i * k;
        idx_t* idxi = labels.data() + i * k;
        if (ip) {
            faiss::heap_heapify<faiss::CMin<float, idx_t>>(k, simi, idxi);
        } else {
            faiss::heap_heapify<faiss::CMax<float, idx_t>>(k, simi, idxi);
        }
        scanner->set_query(xt.data() + i * size_t(ivf.d));
        for (size_t j = 0; j < nprobe; j++) {
            const size_t slot_pos = i * nprobe + j;
            const idx_t key = assign[slot_pos];
            if (key < 0) {
                continue;  // the quantizer found fewer than nprobe lists
            }
            FAISS_THROW_IF_NOT_FMT(
                    size_t(key) < ivf.nlist, "list %ld out of range", long(key));
            const int32_t slot = slots[slot_pos];
            if (slot < 0) {
                continue;  // empty list: nothing was fetched
            }
            FAISS_THROW_IF_NOT(size_t(slot) < sizes.size());
            const size_t list_size = sizes[slot];
            if (list_size == 0) {
                continue;
            }
            scanner->set_list(key, coarse_dis[slot_pos]);
            scanner->scan_codes(
                    list_size,
                    reinterpret_cast<const uint8_t*>(codes_addr[slot]),
                    reinterpret_cast<const idx_t*>(ids_addr[slot]),
                    simi,
                    idxi,
                    k);
        }
        if (ip) {
            faiss::heap_reorder<faiss::CMin<float, idx_t>>(k, simi, idxi);
        } else {
            faiss::heap_reorder<faiss::CMax<float, idx_t>>(k, simi, idxi);
        }
    }
}

void search_full(
        const IvfIndex& index,
        size_t n,
        rust::Slice<const float> x,
        size_t k,
        size_t nprobe,
        const FilterSpec& filter,
        rust::Slice<float> distances,
        rust::Slice<int64_t> labels) {
    single_threaded();
    check_len(x.size(), n * size_t(index.top->d), "queries");
    check_len(distances.size(), n * k, "distances");
    check_len(labels.size(), n * k, "labels");
    FAISS_THROW_IF_NOT_MSG(!index.lazy, "search_full needs a fully loaded index");
    if (!index.ivf) {
        index.top->search(idx_t(n), x.data(), idx_t(k), distances.data(), labels.data());
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
    const Selector selector(filter);
    faiss::SearchParametersIVF params;
    params.nprobe = nprobe;
    params.sel = selector.get();
    index.ivf->search(
            idx_t(n), xt, idx_t(k), distances.data(), labels.data(), &params);
}

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
    index.top->add(idx_t(n), x.data());
}

std::unique_ptr<std::vector<uint8_t>> write_index_bytes(const IvfIndex& index) {
    faiss::VectorIOWriter writer;
    faiss::write_index(index.top.get(), &writer);
    return std::make_unique<std::vector<uint8_t>>(std::move(writer.data));
}

}  // namespace ivflake
