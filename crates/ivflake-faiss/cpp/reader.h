// The reader a header parse runs on: it serves Faiss's reader calls from the
// pieces of the file the caller fetched (a prefix, and further segments past
// list data for the parts that follow it: a refine index, an id map), and
// says which bytes it lacks instead of reading any. Shared by shim.cc (the
// IVF and its lists) and wrap.cc (the wrappers around it).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <faiss/IndexFlatCodes.h>
#include <faiss/impl/io.h>

#include "internal.h"

namespace ivflake {

// Thrown (not a std::exception, so nothing in Faiss swallows it) when the
// parser reads bytes the caller has not fetched: bytes `start..end`. The
// caller fetches them (or more) and parses again.
struct NeedMoreBytes {
    uint64_t start;
    uint64_t end;
};

// A piece of the file past the prefix.
struct Segment {
    uint64_t offset;
    const uint8_t* data;
    size_t len;
};

// Serves Faiss's reader calls from a prefix of the file and any segments.
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
    std::vector<Segment> segments;
    uint64_t pos = 0;
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
            if (h == fourcc("ilod") && !lazy) {
                fail(ErrorKind::Unsupported,
                     "on-disk inverted lists ('ilod') are served from their data file, "
                     "never read whole: open the index lazily");
            }
            if (lazy && (h == fourcc("IxRF") || h == fourcc("IxMp") || h == fourcc("IxM2"))) {
                fail(ErrorKind::Unsupported,
                     "an IndexRefine or IndexIDMap inside another structure: ivflake serves "
                     "them around the IVF index only");
            }
            refuse_unserved_structure(h);
            if (lazy && h == fourcc("ilbl")) {
                mode = Mode::BlockHeader;
            }
        }
        return nitems;
    }

    // Bytes `pos..pos + size * nitems` into `ptr`, from the prefix or one
    // segment; NeedMoreBytes when neither holds them.
    void copy(void* ptr, size_t size, size_t nitems) {
        size_t bytes = 0;
        uint64_t end = 0;
        if (__builtin_mul_overflow(size, nitems, &bytes) ||
            __builtin_add_overflow(pos, uint64_t(bytes), &end)) {
            fail(ErrorKind::Corrupt, "corrupt index header: a field's length overflows");
        }
        if (end > file_len) {
            fail(ErrorKind::Corrupt,
                 "index file is truncated or corrupt: its header needs " +
                         std::to_string(end) + " bytes but the file has " +
                         std::to_string(file_len));
        }
        const uint8_t* from = nullptr;
        if (end <= len) {
            from = data + pos;
        } else {
            for (const auto& s : segments) {
                if (s.offset <= pos && end <= s.offset + s.len) {
                    from = s.data + (pos - s.offset);
                    break;
                }
            }
        }
        if (!from) {
            throw NeedMoreBytes{pos, end};
        }
        if (bytes > 0) {
            std::memcpy(ptr, from, bytes);
        }
        pos = end;
    }

    // Moves past `bytes` of data the parse does not read (list data, refine
    // codes, an id map), checked to stay within the file.
    void skip(uint64_t bytes, const char* what) {
        uint64_t end = 0;
        if (__builtin_add_overflow(pos, bytes, &end) || end > file_len) {
            fail(ErrorKind::Corrupt,
                 std::string("index file is truncated or corrupt: its ") + what + " (" +
                         std::to_string(bytes) + " bytes from byte " + std::to_string(pos) +
                         ") run past the file's " + std::to_string(file_len) + " bytes");
        }
        pos = end;
    }

    template <typename T>
    T read_raw() {
        T v;
        copy(&v, sizeof(T), 1);
        return v;
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

// What the parse of the wrappers around a served index found (wrap.cc).
// `refine_codec` is built during the parse: it becomes the index's only
// once the parse succeeds (a failed parse's arena frees it).
struct WrapParse {
    bool id_map = false;
    bool id_map2 = false;
    int64_t id_map_ntotal = 0;
    int id_map_d = 0;
    faiss::MetricType id_map_metric = faiss::METRIC_L2;
    uint64_t id_map_offset = 0;
    // Where the lists end and the wrappers' tails begin (0: no wrappers).
    uint64_t lists_end = 0;
    bool refine = false;
    int64_t refine_ntotal = 0;
    faiss::IndexFlatCodes* refine_codec = nullptr;
    uint64_t refine_codes_offset = 0;
    float k_factor = 0;
};

// The whole lazy parse of a file: the wrappers' heads, the inner index by
// Faiss's reader (lists skipped), then the wrappers' tails (refine codes
// and id map skipped, their offsets recorded). Returns the inner index.
faiss::Index* read_served(PrefixReader& r, int flags, WrapParse& w);
// Moves what `w` found into `out` once the parse has succeeded.
void adopt_wrappers(IvfIndex& out, const WrapParse& w);

}  // namespace ivflake
