// ivflake's C++ shim over Faiss: opening. It owns two tricks, each explained
// where it lives: a prefix reader that parses an index header without list
// data, and an inverted-lists hook that records where list data starts.
// The parse arena (allocation cap, no leaks) lives in arena.cc, the checks of
// what was parsed in validate.cc, scanning in scan.cc, building in build.cc.

#include "shim.h"

#include <cxxabi.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <typeinfo>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexFlatCodes.h>
#include <faiss/IndexHNSW.h>
#include <faiss/VectorTransform.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexIVFPQFastScan.h>
#include <faiss/IndexIVFRaBitQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/RaBitQuantizer.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <faiss/invlists/BlockInvertedLists.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/invlists/InvertedListsIOHook.h>
#include <faiss/invlists/OnDiskInvertedLists.h>

#include "internal.h"
#include "reader.h"
#include "ivflake-faiss/src/lib.rs.h"

#if FAISS_VERSION_MAJOR < 1 || (FAISS_VERSION_MAJOR == 1 && FAISS_VERSION_MINOR < 12)
#error "ivflake needs Faiss >= 1.12 (scripts/build_faiss.sh builds it)"
#endif

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
}  // namespace

void single_threaded() {
    omp_set_num_threads(1);
}

void all_cores() {
    omp_set_num_threads(omp_get_num_procs());
}

void check_len(size_t got, size_t want, const char* what) {
    if (got != want) {
        fail(ErrorKind::InvalidArgument,
             std::string("ivflake shim: ") + what + " has length " +
                     std::to_string(got) + ", expected " + std::to_string(want));
    }
}

const faiss::IndexIVF& require_ivf(const IvfIndex& index) {
    if (!index.ivf) {
        fail(ErrorKind::InvalidArgument, "not an IVF index");
    }
    return *index.ivf;
}

std::string class_name(const std::type_info& ti) {
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

namespace {

const std::string kFaissVersion = std::to_string(FAISS_VERSION_MAJOR) + "." +
        std::to_string(FAISS_VERSION_MINOR) + "." +
        std::to_string(FAISS_VERSION_PATCH);

}  // namespace

namespace {

// The IVF classes ivflake serves: the one list of them. The Rust side reads
// it through `served_types()`; messages and checks here derive from it.
struct Served {
    IvfKind kind;
    const std::type_info& type;
};

const std::vector<Served>& served_table() {
    static const std::vector<Served> table = {
            {IvfKind::Flat, typeid(faiss::IndexIVFFlat)},
            {IvfKind::Pq, typeid(faiss::IndexIVFPQ)},
            {IvfKind::ScalarQuantizer, typeid(faiss::IndexIVFScalarQuantizer)},
            {IvfKind::PqFastScan, typeid(faiss::IndexIVFPQFastScan)},
            {IvfKind::RaBitQ, typeid(faiss::IndexIVFRaBitQ)},
    };
    return table;
}

}  // namespace

IvfKind ivf_kind_of(const faiss::IndexIVF* ivf) {
    if (ivf) {
        const std::type_info& t = typeid(*ivf);
        for (const auto& served : served_table()) {
            if (served.type == t) {
                return served.kind;
            }
        }
    }
    return IvfKind::NotServed;
}

std::string supported_types() {
    const auto& table = served_table();
    std::string out;
    for (size_t i = 0; i < table.size(); i++) {
        if (i > 0) {
            out += i + 1 == table.size() ? " and " : ", ";
        }
        out += class_name(table[i].type);
    }
    return out + ", optionally under an IndexPreTransform";
}

rust::Vec<ServedType> served_types() {
    rust::Vec<ServedType> out;
    for (const auto& served : served_table()) {
        out.push_back(ServedType{served.kind, class_name(served.type)});
    }
    return out;
}

bool is_block_format(const IvfIndex& index) {
    if (index.list_format == ListFormat::Blocks) {
        return true;
    }
    // An index built in this process has its format in its lists.
    return index.ivf && !index.lazy &&
            dynamic_cast<const faiss::BlockInvertedLists*>(index.ivf->invlists) != nullptr;
}

namespace {

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
        auto* lists = new LazyInvertedLists(nlist, code_size, sizes);
        data_offset_ = reader->pos;
        return lists;
    }

    // Where the last lazily read array lists start; read right after
    // read_index returns, on the same thread.
    static thread_local uint64_t data_offset_;
};
thread_local uint64_t LazyListsHook::data_offset_ = 0;

int lazy_io_flags() {
    static std::once_flag once;
    std::call_once(once, [] {
        faiss::InvertedListsIOHook::add_callback(new LazyListsHook());
    });
    return faiss::IO_FLAG_SKIP_IVF_DATA | faiss::IO_FLAG_SKIP_PRECOMPUTE_TABLE |
            int(fourcc("ilfk") & 0xffff0000u);
}

// Fills the views of `out` and refuses anything but the supported shapes.
void classify(IvfIndex& out) {
    faiss::Index* inner = out.top;
    out.transform = dynamic_cast<faiss::IndexPreTransform*>(inner);
    if (out.transform) {
        inner = out.transform->index;
        if (!inner) {
            fail(ErrorKind::Corrupt, "IndexPreTransform without a sub-index");
        }
    }
    out.ivf = dynamic_cast<faiss::IndexIVF*>(inner);
    if (!out.ivf || ivf_kind_of(out.ivf) == IvfKind::NotServed) {
        fail(ErrorKind::Unsupported,
             "unsupported index type " + name_of(inner) + " (Faiss " +
                     kFaissVersion + "): ivflake serves " + supported_types());
    }
    if (out.ivf->metric_type != faiss::METRIC_L2 &&
        out.ivf->metric_type != faiss::METRIC_INNER_PRODUCT) {
        fail(ErrorKind::Unsupported,
             "unsupported metric " + std::to_string(out.ivf->metric_type) +
                     ": ivflake supports METRIC_L2 and METRIC_INNER_PRODUCT");
    }
    if (!out.ivf->quantizer) {
        fail(ErrorKind::Corrupt, "IVF index without a quantizer");
    }
    if (!out.ivf->is_trained) {
        fail(ErrorKind::Corrupt, "IVF index is not trained");
    }
    validate_structures(out);
}

// Block lists must match the fast-scan index they belong to.
void check_block_shape(
        const faiss::IndexIVF& ivf,
        size_t nlist,
        size_t n_per_block,
        size_t block_size) {
    const auto* fs = dynamic_cast<const faiss::IndexIVFPQFastScan*>(&ivf);
    if (!fs) {
        fail(ErrorKind::Unsupported,
             "index " + name_of(&ivf) + " stores block lists; only IndexIVFPQFastScan's are served");
    }
    const size_t want_block = size_t(fs->bbs) * fs->M2 / 2;
    if (nlist != ivf.nlist || fs->bbs <= 0 || fs->bbs % 32 != 0 ||
        n_per_block != size_t(fs->bbs) || block_size != want_block ||
        fs->M2 != ((fs->pq.M + 1) / 2) * 2 || fs->code_size != fs->pq.code_size) {
        fail(ErrorKind::Corrupt,
             "corrupt fast-scan index: block lists of " + std::to_string(nlist) +
                     " lists, " + std::to_string(n_per_block) + " vectors and " +
                     std::to_string(block_size) + " bytes per block do not match nlist=" +
                     std::to_string(ivf.nlist) + ", bbs=" + std::to_string(fs->bbs) +
                     ", M2=" + std::to_string(fs->M2));
    }
}

std::string describe(const IvfIndex& index) {
    std::string s = describe_wrappers(index);
    if (index.transform) {
        for (const auto* vt : index.transform->chain) {
            s += name_of(vt) + ",";
        }
    }
    if (index.ivf) {
        s += name_of(index.ivf);
        s += "[" + name_of(index.ivf->quantizer) + "]";
        if (index.on_disk) {
            s += "[OnDiskInvertedLists]";
        }
    } else {
        s += name_of(index.top);
    }
    return s;
}

// What a failed parse threw, copied out so that the exception and the partly
// built index can both be freed before it is thrown again.
struct ParseError {
    ErrorKind kind = ErrorKind::Other;
    std::string message;
    uint64_t needed_start = 0;  // for NeedMoreBytes
    uint64_t needed_end = 0;
};

// Faiss throws FaissException for anything wrong in a file; the only valid
// files it refuses are those of a type this version does not know.
ParseError from_faiss(const faiss::FaissException& e) {
    const std::string msg = e.what();
    if (msg.find("not recognized") != std::string::npos) {
        return {ErrorKind::Unsupported,
                "an index type or format Faiss " + kFaissVersion +
                        " does not know (written by a newer Faiss?): " + msg};
    }
    return {ErrorKind::Corrupt, msg};
}

// Runs a parse inside a parse arena (arena.cc).
// Returns the index, or nullptr with `more` set when bytes the caller has
// not fetched were needed; throws ShimError for anything else, after freeing
// what the parse had built.
template <typename Parse>
faiss::Index* parse_in_arena(Parse parse, size_t cap, NeedMoreBytes& more) {
    ParseError error;
    {
        ParseArena arena(cap);
        // Each handler stops recording first: its own allocations are not the index's.
        try {
            return parse();
        } catch (const NeedMoreBytes& need) {
            arena.stop_recording();
            error.kind = ErrorKind::NeedMoreBytes;
            error.needed_start = need.start;
            error.needed_end = need.end;
        } catch (const faiss::FaissException& e) {
            arena.stop_recording();
            error = from_faiss(e);
        } catch (const ShimError& e) {
            arena.stop_recording();
            error = {e.kind, e.what()};
        } catch (const AllocationRefused& e) {
            arena.stop_recording();
            error = {ErrorKind::AllocationRefused, e.what()};
        } catch (const std::bad_alloc&) {
            arena.stop_recording();
            error = {ErrorKind::OutOfMemory, "out of memory while reading the index header"};
        } catch (const std::exception& e) {
            arena.stop_recording();
            error = {ErrorKind::Other, e.what()};
        } catch (...) {
            arena.stop_recording();
            error = {ErrorKind::Other, "unknown C++ exception while reading the index header"};
        }
        // The exception is destroyed by now: what is still recorded is the
        // part of the index the reader built before it threw.
        arena.free_recorded();
    }
    if (error.kind == ErrorKind::NeedMoreBytes) {
        more = {error.needed_start, error.needed_end};
        return nullptr;
    }
    fail(error.kind, error.message);
}

// On-disk lists ('ilod'): their places in the data file kept, the lists
// replaced by lazy ones of the same sizes.
void adopt_on_disk_lists(IvfIndex& out, faiss::OnDiskInvertedLists& od) {
    faiss::IndexIVF& ivf = *out.ivf;
    if (ivf_kind_of(&ivf) == IvfKind::PqFastScan) {
        fail(ErrorKind::Corrupt, "a fast-scan index with on-disk array lists");
    }
    if (od.nlist != ivf.nlist || od.code_size != ivf.code_size || od.lists.size() != od.nlist) {
        fail(ErrorKind::Corrupt,
             "corrupt on-disk inverted lists: " + std::to_string(od.lists.size()) +
                     " lists of code size " + std::to_string(od.code_size) + " in an index of nlist=" +
                     std::to_string(ivf.nlist) + ", code_size=" + std::to_string(ivf.code_size));
    }
    std::vector<size_t> sizes(od.nlist);
    out.on_disk_lists.reserve(3 * od.nlist);
    for (size_t l = 0; l < od.nlist; l++) {
        const auto& list = od.lists[l];
        sizes[l] = list.size;
        out.on_disk_lists.push_back(list.offset);
        out.on_disk_lists.push_back(list.capacity);
        out.on_disk_lists.push_back(list.size);
    }
    out.on_disk = true;
    out.on_disk_filename = od.filename;
    out.on_disk_totsize = od.totsize;
    ivf.replace_invlists(new LazyInvertedLists(ivf.nlist, ivf.code_size, std::move(sizes)), true);
}

}  // namespace

std::unique_ptr<IvfIndex> open_header(
        rust::Slice<const uint8_t> prefix,
        rust::Slice<const uint8_t> segments,
        rust::Slice<const uint64_t> segment_offsets,
        uint64_t file_len,
        size_t alloc_cap,
        uint64_t& needed_start,
        uint64_t& needed_end) {
    needed_start = needed_end = 0;
    int flags = lazy_io_flags();
    PrefixReader reader(prefix.data(), prefix.size(), file_len, true);
    if (segment_offsets.size() % 2 != 0) {
        fail(ErrorKind::InvalidArgument, "segment offsets come in (offset, length) pairs");
    }
    size_t at = 0;
    for (size_t i = 0; i < segment_offsets.size(); i += 2) {
        const uint64_t len = segment_offsets[i + 1];
        if (len > segments.size() - at) {
            fail(ErrorKind::InvalidArgument, "segments are shorter than their lengths say");
        }
        reader.segments.push_back({segment_offsets[i], segments.data() + at, size_t(len)});
        at += len;
    }
    auto out = std::make_unique<IvfIndex>();
    LazyListsHook::data_offset_ = 0;
    WrapParse wrappers;
    NeedMoreBytes more{0, 0};
    out->owner.reset(parse_in_arena(
            [&] { return read_served(reader, flags, wrappers); }, alloc_cap, more));
    if (!out->owner) {
        needed_start = more.start;
        needed_end = more.end;
        return nullptr;
    }
    out->top = out->owner.get();
    adopt_wrappers(*out, wrappers);
    classify(*out);
    faiss::IndexIVF& ivf = *out->ivf;
    if (auto* lazy = dynamic_cast<LazyInvertedLists*>(ivf.invlists)) {
        (void)lazy;
        out->list_format = ListFormat::Array;
        out->list_data_offset = LazyListsHook::data_offset_;
    } else if (auto* od = dynamic_cast<faiss::OnDiskInvertedLists*>(ivf.invlists)) {
        adopt_on_disk_lists(*out, *od);
        out->list_format = ListFormat::Array;
    } else if (auto* blocks = dynamic_cast<faiss::BlockInvertedLists*>(ivf.invlists)) {
        if (reader.mode != PrefixReader::Mode::BlockLists ||
            reader.synthetic_reads_left != 0) {
            fail(ErrorKind::Corrupt, "block inverted lists were not read to their end");
        }
        check_block_shape(ivf, blocks->nlist, blocks->n_per_block, blocks->block_size);
        out->list_format = ListFormat::Blocks;
        out->n_per_block = blocks->n_per_block;
        out->block_size = blocks->block_size;
        out->list_data_offset = reader.pos;
        ivf.replace_invlists(
                new LazyInvertedLists(ivf.nlist, ivf.code_size, {}), true);
    } else {
        fail(ErrorKind::Unsupported,
             "index " + name_of(out->ivf) + " stores its lists as " +
                     (ivf.invlists ? name_of(ivf.invlists) : std::string("nothing")) +
                     ", not Faiss's array, block or on-disk lists; ivflake cannot range-read them");
    }
    if (reader.pos > file_len) {
        fail(ErrorKind::Corrupt, "list data starts past the end of the file");
    }
    out->lazy = true;
    return out;
}

std::unique_ptr<IvfIndex> read_index_bytes(rust::Slice<const uint8_t> bytes) {
    PrefixReader reader(bytes.data(), bytes.size(), bytes.size(), false);
    auto out = std::make_unique<IvfIndex>();
    NeedMoreBytes more{0, 0};  // never set: the reader has the whole file
    out->owner.reset(parse_in_arena(
            [&] { return faiss::read_index(&reader, faiss::IO_FLAG_SKIP_PRECOMPUTE_TABLE); },
            bytes.size() * 2 + (size_t(256) << 20),
            more));
    if (!out->owner) {
        fail(ErrorKind::Corrupt, "index file is truncated");
    }
    unwrap(*out);
    classify(*out);
    if (auto* blocks = dynamic_cast<faiss::BlockInvertedLists*>(out->ivf->invlists)) {
        check_block_shape(*out->ivf, blocks->nlist, blocks->n_per_block, blocks->block_size);
        out->list_format = ListFormat::Blocks;
        out->n_per_block = blocks->n_per_block;
        out->block_size = blocks->block_size;
    } else {
        out->list_format = ListFormat::Array;
    }
    // As faiss.read_index does: the residual table, whatever its size.
    build_residual_table(*out, UINT64_MAX);
    return out;
}

rust::Vec<uint64_t> on_disk_lists(const IvfIndex& index) {
    rust::Vec<uint64_t> out;
    out.reserve(index.on_disk_lists.size());
    for (uint64_t v : index.on_disk_lists) {
        out.push_back(v);
    }
    return out;
}

rust::String on_disk_filename(const IvfIndex& index) {
    return rust::String::lossy(index.on_disk_filename);
}

IndexInfo info(const IvfIndex& index) {
    IndexInfo i;
    i.type_name = describe(index);
    i.ivf_kind = ivf_kind_of(index.ivf);
    i.d = size_t(index.top->d);
    i.ivf_d = index.ivf ? size_t(index.ivf->d) : i.d;
    i.metric = index.top->metric_type == faiss::METRIC_L2 ? Metric::L2 : Metric::InnerProduct;
    i.ntotal = index.top->ntotal;
    i.nlist = index.ivf ? index.ivf->nlist : 0;
    i.code_size = index.ivf ? index.ivf->code_size : 0;
    i.default_nprobe = index.ivf ? index.ivf->nprobe : 0;
    i.has_transform = index.transform != nullptr;
    i.list_data_offset = index.list_data_offset;
    i.list_data_end = index.list_data_end;
    i.list_format = is_block_format(index) ? ListFormat::Blocks : ListFormat::Array;
    i.n_per_block = index.n_per_block;
    i.block_size = index.block_size;
    const auto* blocks = index.ivf && !index.lazy
            ? dynamic_cast<const faiss::BlockInvertedLists*>(index.ivf->invlists)
            : nullptr;
    if (blocks) {
        i.n_per_block = blocks->n_per_block;
        i.block_size = blocks->block_size;
    }
    i.k_factor = index.k_factor;
    const auto* refine_codes = dynamic_cast<const faiss::IndexFlatCodes*>(index.refine_codec);
    i.refine_code_size = refine_codes ? refine_codes->code_size : 0;
    i.refine_codes_offset = index.refine_codes_offset;
    i.id_map = index.id_map;
    i.id_map2 = index.id_map2;
    i.id_map_offset = index.id_map_offset;
    i.on_disk = index.on_disk;
    i.on_disk_totsize = index.on_disk_totsize;
    return i;
}

rust::Vec<uint64_t> list_sizes(const IvfIndex& index) {
    rust::Vec<uint64_t> out;
    if (!index.ivf) {
        return out;
    }
    if (auto* lazy = dynamic_cast<const LazyInvertedLists*>(index.ivf->invlists)) {
        out.reserve(lazy->header_sizes.size());
        for (size_t s : lazy->header_sizes) {
            out.push_back(s);
        }
        return out;
    }
    out.reserve(index.ivf->nlist);
    for (size_t l = 0; l < index.ivf->nlist; l++) {
        out.push_back(index.ivf->invlists->list_size(l));
    }
    return out;
}

rust::String faiss_version() {
    return rust::String(kFaissVersion);
}

// ---------------------------------------------------------------------------
// What a parsed header holds in memory.
// ---------------------------------------------------------------------------
namespace {

// The product quantizer whose residual table Faiss's scanners can use:
// IVF-PQ and fast-scan IVF-PQ, residual codes, an L2 quantizer (Faiss builds
// no table otherwise).
const faiss::ProductQuantizer* residual_pq(const faiss::IndexIVF& ivf) {
    if (!ivf.by_residual || ivf.quantizer->metric_type != faiss::METRIC_L2) {
        return nullptr;
    }
    if (const auto* fs = dynamic_cast<const faiss::IndexIVFPQFastScan*>(&ivf)) {
        return &fs->pq;
    }
    if (const auto* pq = dynamic_cast<const faiss::IndexIVFPQ*>(&ivf)) {
        return &pq->pq;
    }
    return nullptr;
}

uint64_t floats(size_t n) {
    return uint64_t(n) * sizeof(float);
}

uint64_t transform_bytes(const faiss::VectorTransform* vt) {
    uint64_t bytes = 0;
    if (const auto* lt = dynamic_cast<const faiss::LinearTransform*>(vt)) {
        bytes += floats(lt->A.size()) + floats(lt->b.size());
    }
    if (const auto* pca = dynamic_cast<const faiss::PCAMatrix*>(vt)) {
        bytes += floats(pca->mean.size()) + floats(pca->eigenvalues.size()) +
                floats(pca->PCAMat.size());
    }
    if (const auto* c = dynamic_cast<const faiss::CenteringTransform*>(vt)) {
        bytes += floats(c->mean.size());
    }
    return bytes;
}

}  // namespace

uint64_t build_residual_table(IvfIndex& index, uint64_t max_bytes) {
    faiss::IndexIVF& ivf = *index.ivf;
    const faiss::ProductQuantizer* pq = residual_pq(ivf);
    if (!pq) {
        return 0;
    }
    const uint64_t need = floats(size_t(ivf.nlist) * pq->M * pq->ksub);
    auto* fs = dynamic_cast<faiss::IndexIVFPQFastScan*>(&ivf);
    auto* ivfpq = dynamic_cast<faiss::IndexIVFPQ*>(&ivf);
    // -1 tells Faiss to build none: its scanners then compute each list's
    // residual table per query instead.
    int& use = fs ? fs->use_precomputed_table : ivfpq->use_precomputed_table;
    if (need > max_bytes) {
        use = -1;
        return 0;
    }
    use = 0;
    if (fs) {
        fs->precompute_table();
        return floats(fs->precomputed_table.size());
    }
    ivfpq->precompute_table();
    return floats(ivfpq->precomputed_table.size());
}

uint64_t residual_table_size(const IvfIndex& index) {
    const faiss::ProductQuantizer* pq = residual_pq(require_ivf(index));
    return pq ? floats(size_t(index.ivf->nlist) * pq->M * pq->ksub) : 0;
}

MemoryReport memory_report(const IvfIndex& index) {
    const faiss::IndexIVF& ivf = require_ivf(index);
    MemoryReport m{};
    const faiss::Index* q = ivf.quantizer;
    if (const auto* flat = dynamic_cast<const faiss::IndexFlat*>(q)) {
        m.quantizer = flat->codes.size();
    } else if (const auto* hnsw = dynamic_cast<const faiss::IndexHNSW*>(q)) {
        const auto& g = hnsw->hnsw;
        const auto* storage = dynamic_cast<const faiss::IndexFlat*>(hnsw->storage);
        m.quantizer = (storage ? storage->codes.size() : 0) + g.levels.size() * sizeof(int) +
                g.offsets.size() * sizeof(size_t) + g.neighbors.size() * sizeof(int32_t) +
                g.cum_nneighbor_per_level.size() * sizeof(int) +
                g.assign_probas.size() * sizeof(double);
    }
    if (const auto* fs = dynamic_cast<const faiss::IndexIVFPQFastScan*>(&ivf)) {
        m.codec = floats(fs->pq.centroids.size());
        m.residual_table = floats(fs->precomputed_table.size());
    } else if (const auto* pq = dynamic_cast<const faiss::IndexIVFPQ*>(&ivf)) {
        m.codec = floats(pq->pq.centroids.size()) + floats(pq->pq.sdc_table.size());
        m.residual_table = floats(pq->precomputed_table.size());
    } else if (const auto* sq = dynamic_cast<const faiss::IndexIVFScalarQuantizer*>(&ivf)) {
        m.codec = floats(sq->sq.trained.size());
    }
    if (index.transform) {
        for (const auto* vt : index.transform->chain) {
            m.transforms += transform_bytes(vt);
        }
    }
    if (const auto* lazy = dynamic_cast<const LazyInvertedLists*>(ivf.invlists)) {
        m.list_sizes = lazy->header_sizes.size() * sizeof(size_t);
    }
    return m;
}

}  // namespace ivflake
