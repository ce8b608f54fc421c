// Pieces the shim's files share: the lazy inverted lists, error helpers and
// thread settings. Nothing here is part of the bridge.
#pragma once

#include <cstdint>
#include <string>
#include <typeinfo>
#include <vector>

#include <faiss/impl/IDSelector.h>
#include <faiss/impl/ScalarQuantizer.h>
#include <faiss/invlists/InvertedLists.h>

#include "shim.h"

namespace ivflake {

// Faiss 1.7 spelled it Index::idx_t, later versions faiss::idx_t; both are int64_t.
using idx_t = int64_t;

[[noreturn]] inline void fail(ErrorKind kind, const std::string& message) {
    throw ShimError(kind, message);
}

void check_len(size_t got, size_t want, const char* what);
const faiss::IndexIVF& require_ivf(const IvfIndex& index);

// Faiss's OpenMP loops would oversubscribe the compute pool that calls us:
// parallelism comes from running many searches at once instead. This also
// keeps every Faiss call of a scan on the calling thread, which the lazy
// lists' thread-local table relies on.
void single_threaded();
// Building an index is a batch job with the machine to itself.
void all_cores();

// While alive, this thread's allocations above `cap` (0: none) are refused
// and every block allocated is recorded until freed (arena.cc), so that what a
// failed parse built can be freed. One per thread at a time.
struct ArenaState;
class ParseArena {
public:
    explicit ParseArena(size_t cap);
    ~ParseArena();
    ParseArena(const ParseArena&) = delete;
    ParseArena& operator=(const ParseArena&) = delete;
    // Allocations from here on are not the parse's.
    void stop_recording();
    // Frees every block still recorded, and stops the arena.
    void free_recorded();

private:
    ArenaState* state_;
};

// A Faiss structure tag as the file stores it.
inline uint32_t fourcc(const char* s) {
    return uint32_t(uint8_t(s[0])) | uint32_t(uint8_t(s[1])) << 8 |
            uint32_t(uint8_t(s[2])) << 16 | uint32_t(uint8_t(s[3])) << 24;
}

// Every served index type, for messages ("IndexIVFFlat, ... and ..."), from
// the one table of served types in shim.cc.
std::string supported_types();
// The served kind of an IVF class; IvfKind::NotServed for any other.
IvfKind ivf_kind_of(const faiss::IndexIVF* ivf);
// Whether `index`'s lists are block lists (fast-scan), open or built here.
bool is_block_format(const IvfIndex& index);

// Refuses a 4-byte field equal to a Faiss structure tag ivflake does not
// serve (validate.cc), before Faiss's reader acts on it.
void refuse_unserved_structure(uint32_t tag);

// Checks a scalar quantizer's type, sizes and trained values against `d`.
void check_scalar_quantizer(const faiss::ScalarQuantizer& sq, size_t d, const std::string& structure);

// The wrappers around a served index (wrap.cc). `unwrap` points `top` at the
// index inside an IndexIDMap/IndexRefine the parse built whole (`owner`).
void unwrap(IvfIndex& index);
// "IndexIDMap2,IndexRefineFlat," and the like: the wrappers' part of a type name.
std::string describe_wrappers(const IvfIndex& index);
// Faiss's own search of a wrapped index read in full (the reference).
void search_wrapped(
        const IvfIndex& index,
        size_t n,
        const float* x,
        size_t k,
        size_t nprobe,
        float k_factor,
        const faiss::IDSelector* sel,
        float* distances,
        idx_t* labels);

// Checks every count and index Faiss will trust in a parsed header
// (validate.cc); throws Corrupt or Unsupported naming the structure and field.
void validate_structures(IvfIndex& index);

std::string class_name(const std::type_info& ti);
template <typename T>
std::string name_of(const T* obj) {
    return class_name(typeid(*obj));
}

// The buffers of the scan running on this thread: list number -> entry of
// `buffers`, sorted by list number.
struct ScanTable {
    const faiss::InvertedLists* owner;
    std::vector<std::pair<size_t, uint32_t>> slot_of_list;
    std::vector<const uint8_t*> codes;
    std::vector<const idx_t*> ids;
    std::vector<size_t> sizes;

    // The entry holding `list_no`, or -1.
    int64_t find(size_t list_no) const;
};

// Inverted lists whose data stays in the object store. Outside a scan they
// answer list sizes from the header (array layout) and nothing else; during
// `scan_lists` they resolve list numbers to the caller's fetched buffers
// through the calling thread's ScanTable, so Faiss's own
// `search_preassigned` (plain, fast-scan or RaBitQ) scans them unchanged.
struct LazyInvertedLists : faiss::InvertedLists {
    // Header sizes for the array layout; empty for block lists, whose sizes
    // are inline in the file.
    std::vector<size_t> header_sizes;

    LazyInvertedLists(size_t nlist, size_t code_size, std::vector<size_t> sizes)
            : faiss::InvertedLists(nlist, code_size),
              header_sizes(std::move(sizes)) {}

    // Installs `table` as this thread's view of `owner` for its lifetime.
    struct Scope {
        explicit Scope(const ScanTable* table);
        ~Scope();
    };

    size_t list_size(size_t list_no) const override;
    const uint8_t* get_codes(size_t list_no) const override;
    const idx_t* get_ids(size_t list_no) const override;
    size_t add_entries(size_t, size_t, const idx_t*, const uint8_t*) override;
    void update_entries(size_t, size_t, size_t, const idx_t*, const uint8_t*)
            override;
    void resize(size_t, size_t) override;

   private:
    int64_t entry(size_t list_no) const;
};

}  // namespace ivflake
