// The C++ half of the bridge: everything ivflake asks of Faiss goes through
// these functions. Each one may throw; cxx turns the exception into a Rust
// `Err` because every bridge function returns `Result`.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "rust/cxx.h"

#include <faiss/Index.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexPreTransform.h>

namespace ivflake {

struct IndexInfo;
struct FilterSpec;

// An owned Faiss index plus the views ivflake needs of it: the IVF layer and,
// when there is one, the pre-transform chain in front of it.
struct IvfIndex {
    std::unique_ptr<faiss::Index> top;
    faiss::IndexPreTransform* transform = nullptr;
    faiss::IndexIVF* ivf = nullptr;
    // Sizes and file offset of list data when opened lazily; empty otherwise.
    std::vector<size_t> lazy_sizes;
    uint64_t list_data_offset = 0;
    bool lazy = false;
};

std::unique_ptr<IvfIndex> open_header(
        rust::Slice<const uint8_t> prefix,
        uint64_t file_len,
        size_t alloc_cap,
        uint64_t& needed);
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
        rust::Slice<int64_t> labels);
void search_full(
        const IvfIndex& index,
        size_t n,
        rust::Slice<const float> x,
        size_t k,
        size_t nprobe,
        const FilterSpec& filter,
        rust::Slice<float> distances,
        rust::Slice<int64_t> labels);
std::unique_ptr<IvfIndex> index_factory(
        size_t d,
        rust::Str description,
        bool metric_l2);
bool is_trained(const IvfIndex& index);
void train(IvfIndex& index, size_t n, rust::Slice<const float> x);
void add(IvfIndex& index, size_t n, rust::Slice<const float> x);
std::unique_ptr<std::vector<uint8_t>> write_index_bytes(const IvfIndex& index);

}  // namespace ivflake
