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

#include "internal.h"
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

// Thrown (not a std::exception, so nothing in Faiss swallows it) when the
// parser runs past the prefix we have; the caller fetches more and retries.
struct NeedMoreBytes {
    uint64_t end;
};

// Serves Faiss's reader calls from a prefix of the file.
//
// Block lists (fast-scan's "ilbl") keep each list's size inline, before its
// data, and Faiss's own hook for them reads every list. So when `lazy` and
// the parser reads the fourcc "ilbl" as one uint32, the reader serves the
// section's four header fields (nlist, code_size, n_per_block, block_size)
// from the file and then answers every list as empty (a zero count for its
// ids and for its codes) without reading the file: Faiss parses everything
// else itself and ends up with empty BlockInvertedLists, which open_header
// replaces. Any other read shape in that section is refused as corrupt.
struct PrefixReader : faiss::IOReader {
    enum class Mode { Normal, BlockHeader, BlockLists };

    const uint8_t* data;
    size_t len;
    uint64_t file_len;
    bool lazy;
    size_t pos = 0;
    Mode mode = Mode::Normal;
    uint64_t block_fields[4] = {0, 0, 0, 0};
    size_t block_fields_read = 0;
    uint64_t synthetic_reads_left = 0;

    PrefixReader(const uint8_t* data, size_t len, uint64_t file_len, bool lazy)
            : data(data), len(len), file_len(file_len), lazy(lazy) {
        name = "ivflake-prefix";
    }

    size_t operator()(void* ptr, size_t size, size_t nitems) override {
        if (mode == Mode::BlockLists) {
            return synthetic(ptr, size, nitems);
        }
        if (mode == Mode::BlockHeader && !(size == 8 && nitems == 1)) {
            fail(ErrorKind::Corrupt,
                 "corrupt block inverted lists: unexpected header field");
        }
        copy(ptr, size, nitems);
        if (mode == Mode::BlockHeader) {
            std::memcpy(&block_fields[block_fields_read++], ptr, 8);
            if (block_fields_read == 4) {
                start_block_lists();
            }
        } else if (size == 4 && nitems == 1) {
            uint32_t h;
            std::memcpy(&h, ptr, 4);
            refuse_unserved_structure(h);
            if (lazy && h == fourcc("ilbl")) {
                mode = Mode::BlockHeader;
            }
        }
        return nitems;
    }

    void copy(void* ptr, size_t size, size_t nitems) {
        size_t bytes = 0;
        uint64_t end = 0;
        if (__builtin_mul_overflow(size, nitems, &bytes) ||
            __builtin_add_overflow(uint64_t(pos), uint64_t(bytes), &end)) {
            fail(ErrorKind::Corrupt, "corrupt index header: a field's length overflows");
        }
        if (end > file_len) {
            fail(ErrorKind::Corrupt,
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
    }

    void start_block_lists() {
        const uint64_t nlist = block_fields[0];
        // Every list takes at least its two 8-byte counts in the file.
        if (nlist > (file_len - pos) / 16) {
            fail(ErrorKind::Corrupt,
                 "corrupt block inverted lists: " + std::to_string(nlist) +
                         " lists cannot fit in the rest of the file");
        }
        mode = Mode::BlockLists;
        synthetic_reads_left = 2 * nlist;
    }

    size_t synthetic(void* ptr, size_t size, size_t nitems) {
        if (nitems == 0) {
            return 0;  // the data of an empty vector
        }
        if (size != 8 || nitems != 1 || synthetic_reads_left == 0) {
            fail(ErrorKind::Corrupt,
                 "block inverted lists are not the last section of the file");
        }
        synthetic_reads_left--;
        std::memset(ptr, 0, 8);
        return 1;
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
    faiss::Index* inner = out.top.get();
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

// What a failed parse threw, copied out so that the exception and the partly
// built index can both be freed before it is thrown again.
struct ParseError {
    ErrorKind kind = ErrorKind::Other;
    std::string message;
    uint64_t needed = 0;  // for NeedMoreBytes
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

// Runs Faiss's reader inside a parse arena (arena.cc).
// Returns the index, or nullptr with `needed` set when the prefix was too
// short; throws ShimError for anything else, after freeing what the reader
// had built.
faiss::Index* read_in_arena(faiss::IOReader* reader, int flags, size_t cap, uint64_t& needed) {
    ParseError error;
    {
        ParseArena arena(cap);
        // Each handler stops recording first: its own allocations are not the index's.
        try {
            return faiss::read_index(reader, flags);
        } catch (const NeedMoreBytes& more) {
            arena.stop_recording();
            error.kind = ErrorKind::NeedMoreBytes;
            error.needed = more.end;
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
        needed = error.needed;
        return nullptr;
    }
    fail(error.kind, error.message);
}

}  // namespace

std::unique_ptr<IvfIndex> open_header(
        rust::Slice<const uint8_t> prefix,
        uint64_t file_len,
        size_t alloc_cap,
        uint64_t& needed) {
    needed = 0;
    int flags = lazy_io_flags();
    PrefixReader reader(prefix.data(), prefix.size(), file_len, true);
    auto out = std::make_unique<IvfIndex>();
    LazyListsHook::data_offset_ = 0;
    out->top.reset(read_in_arena(&reader, flags, alloc_cap, needed));
    if (!out->top) {
        return nullptr;
    }
    classify(*out);
    faiss::IndexIVF& ivf = *out->ivf;
    if (auto* lazy = dynamic_cast<LazyInvertedLists*>(ivf.invlists)) {
        (void)lazy;
        out->list_format = ListFormat::Array;
        out->list_data_offset = LazyListsHook::data_offset_;
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
                     ", not Faiss's array or block lists; ivflake cannot range-read them");
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
    uint64_t needed = 0;  // never set: the reader has the whole file
    out->top.reset(read_in_arena(
            &reader,
            faiss::IO_FLAG_SKIP_PRECOMPUTE_TABLE,
            bytes.size() * 2 + (size_t(256) << 20),
            needed));
    if (!out->top) {
        fail(ErrorKind::Corrupt, "index file is truncated");
    }
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
