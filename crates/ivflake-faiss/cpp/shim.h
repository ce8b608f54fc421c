// The C++ half of the bridge: everything ivflake asks of Faiss goes through
// these functions. Each one may throw; cxx turns the exception into a Rust
// `Err` because every bridge function returns `Result`, and the `trycatch`
// below tags the message with a kind the Rust side reads back.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "rust/cxx.h"

#include <faiss/Index.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/impl/FaissException.h>

namespace ivflake {

struct IndexInfo;
struct FilterSpec;
struct ListBuffer;
struct ScanLayer;
struct ScanRequest;
struct MemoryReport;
struct ServedType;
// Shared enums, defined by the bridge (lib.rs.h); cxx gives them a u8 repr.
enum class Metric : uint8_t;
enum class ListFormat : uint8_t;
enum class IvfKind : uint8_t;

// The kinds `FaissErrorKind` distinguishes; the value is the tag the Rust
// side parses (`FaissErrorKind::from_tag`).
enum class ErrorKind : char {
    Unsupported = 'U',
    Corrupt = 'C',
    NeedMoreBytes = 'N',
    AllocationRefused = 'A',
    OutOfMemory = 'M',
    InvalidArgument = 'I',
    Other = 'O',
};

// An error the shim classified itself.
struct ShimError : std::runtime_error {
    ErrorKind kind;
    ShimError(ErrorKind kind, const std::string& message)
            : std::runtime_error(message), kind(kind) {}
};

// A single allocation above the parse-time cap (see shim.cc).
struct AllocationRefused : std::bad_alloc {
    const char* what() const noexcept override {
        return "index header asks for an allocation larger than the file could "
               "hold: the file is corrupt";
    }
};

inline std::string tagged(ErrorKind kind, const char* message) {
    std::string out(1, char(kind));
    out += '|';
    out += message;
    return out;
}

// An owned Faiss index plus the views ivflake needs of it: the IVF layer and,
// when there is one, the pre-transform chain in front of it.
struct IvfIndex {
    // What the parse built; `top` is the served index inside it, under any
    // wrappers (the whole index when read in full, the inner one when lazy).
    std::unique_ptr<faiss::Index> owner;
    faiss::Index* top = nullptr;
    faiss::IndexPreTransform* transform = nullptr;
    faiss::IndexIVF* ivf = nullptr;
    // Where list data starts in the file when opened lazily; 0 otherwise.
    uint64_t list_data_offset = 0;
    // Where list data ends when structures follow it (wrappers); 0: the file's end.
    uint64_t list_data_end = 0;
    bool lazy = false;
    // Array (the zero value) until open or info() finds block lists.
    ListFormat list_format{};
    size_t n_per_block = 0;
    size_t block_size = 0;
    // The largest centroid coordinate's magnitude (validate.cc): bounds the
    // queries an inner-product HNSW quantizer can take without overflow.
    float centroid_max_abs = 0;

    // Wrappers around `top` (wrap.cc). IndexRefine: `refine_codec` scores
    // candidates (an IndexFlat or IndexScalarQuantizer holding no codes when
    // lazy; the file's refine index when read in full), its codes start at
    // `refine_codes_offset`, and `k_factor` is the file's (0: no refine).
    std::unique_ptr<faiss::Index> refine_owner;
    const faiss::Index* refine_codec = nullptr;
    uint64_t refine_codes_offset = 0;
    float k_factor = 0;
    // IndexIDMap ('IxMp') or IndexIDMap2 ('IxM2'): `ntotal` user ids from
    // `id_map_offset`. `full_wrapper` is the outermost wrapper Faiss built
    // when the file was read in full (the reference search's entry).
    bool id_map = false;
    bool id_map2 = false;
    uint64_t id_map_offset = 0;
    const faiss::Index* full_wrapper = nullptr;
    // On-disk lists ('ilod'): per list (offset, capacity, size) in the data
    // file the header names, and that file's name and length.
    bool on_disk = false;
    std::string on_disk_filename;
    uint64_t on_disk_totsize = 0;
    std::vector<uint64_t> on_disk_lists;
};

std::unique_ptr<IvfIndex> open_header(
        rust::Slice<const uint8_t> prefix,
        rust::Slice<const uint8_t> segments,
        rust::Slice<const uint64_t> segment_offsets,
        uint64_t file_len,
        size_t alloc_cap,
        uint64_t& needed_start,
        uint64_t& needed_end);
rust::Vec<uint64_t> on_disk_lists(const IvfIndex& index);
rust::String on_disk_filename(const IvfIndex& index);
void refine(
        const IvfIndex& index,
        rust::Slice<const float> x,
        size_t k,
        size_t k_base,
        rust::Slice<const int64_t> base_labels,
        rust::Slice<const float> base_distances,
        rust::Slice<const uint8_t> codes,
        rust::Slice<float> distances,
        rust::Slice<int64_t> labels);
std::unique_ptr<IvfIndex> read_index_bytes(rust::Slice<const uint8_t> bytes);
IndexInfo info(const IvfIndex& index);
rust::Vec<uint64_t> list_sizes(const IvfIndex& index);
void apply_transform(
        const IvfIndex& index,
        size_t n,
        rust::Slice<const float> x,
        rust::Slice<float> out);
void coarse_search(
        const IvfIndex& index,
        size_t n,
        rust::Slice<const float> x,
        size_t nprobe,
        rust::Slice<float> coarse_dis,
        rust::Slice<int64_t> assign);
void scan_lists(
        const IvfIndex& index,
        const ScanRequest& request,
        rust::Slice<float> distances,
        rust::Slice<int64_t> labels);
void search_full(
        const IvfIndex& index,
        rust::Slice<const float> x,
        size_t k,
        size_t nprobe,
        float k_factor,
        const FilterSpec& filter,
        rust::Slice<float> distances,
        rust::Slice<int64_t> labels);
std::unique_ptr<IvfIndex> index_factory(
        size_t d,
        rust::Str description,
        Metric metric);
rust::Vec<ServedType> served_types();
void encode_entries(
        const IvfIndex& index,
        size_t n,
        rust::Slice<const float> x,
        rust::Slice<int64_t> lists,
        rust::Slice<uint8_t> codes);
void pack_list_codes(
        const IvfIndex& index,
        size_t n,
        rust::Slice<const uint8_t> codes,
        rust::Slice<uint8_t> out);
size_t remove_ids(IvfIndex& index, rust::Slice<const int64_t> ids);
bool is_trained(const IvfIndex& index);
void train(IvfIndex& index, size_t n, rust::Slice<const float> x);
void add(IvfIndex& index, size_t n, rust::Slice<const float> x);
void add_with_ids(
        IvfIndex& index,
        size_t n,
        rust::Slice<const float> x,
        rust::Slice<const int64_t> ids);
std::unique_ptr<std::vector<uint8_t>> write_index_bytes(const IvfIndex& index);
std::unique_ptr<std::vector<uint8_t>> write_header(IvfIndex& index, rust::Slice<const uint64_t> sizes);
rust::String faiss_version();
uint64_t build_residual_table(IvfIndex& index, uint64_t max_bytes);
uint64_t residual_table_size(const IvfIndex& index);
MemoryReport memory_report(const IvfIndex& index);
bool release_free_memory();

}  // namespace ivflake

// cxx's hook for turning a C++ exception into a Rust error: every exception,
// not only std::exception, becomes an `Err` whose message starts with its
// kind's tag.
namespace rust {
namespace behavior {
template <typename Try, typename Fail>
static void trycatch(Try&& func, Fail&& fail) noexcept try {
    func();
} catch (const ivflake::ShimError& e) {
    fail(ivflake::tagged(e.kind, e.what()).c_str());
} catch (const ivflake::AllocationRefused& e) {
    fail(ivflake::tagged(ivflake::ErrorKind::AllocationRefused, e.what()).c_str());
} catch (const std::bad_alloc& e) {
    fail(ivflake::tagged(ivflake::ErrorKind::OutOfMemory, "out of memory").c_str());
} catch (const std::invalid_argument& e) {
    fail(ivflake::tagged(ivflake::ErrorKind::InvalidArgument, e.what()).c_str());
} catch (const std::exception& e) {
    fail(ivflake::tagged(ivflake::ErrorKind::Other, e.what()).c_str());
} catch (...) {
    fail(ivflake::tagged(ivflake::ErrorKind::Other, "unknown C++ exception").c_str());
}
}  // namespace behavior
}  // namespace rust
