// ivflake's C++ shim over Faiss: the wrappers Faiss writes around an IVF
// index that ivflake serves, IndexIDMap/IndexIDMap2 ('IxMp', 'IxM2') and
// IndexRefine/IndexRefineFlat ('IxRF'), nested as Faiss's factory nests them
// ("IDMap2,OPQ16,IVF4096,PQ16,RFlat": the id map outside, the refine index
// around the pre-transformed IVF). A lazy open reads their heads and records
// where the parts that grow with ntotal start (refine codes, the id map)
// without reading them; a search range-reads the entries it needs, and
// `refine` scores the candidates as IndexRefine::search does.

#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexRefine.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/DistanceComputer.h>
#include <faiss/impl/index_read_utils.h>
#include <faiss/index_io.h>
#include <faiss/invlists/OnDiskInvertedLists.h>
#include <faiss/utils/Heap.h>

#include "internal.h"
#include "reader.h"
#include "ivflake-faiss/src/lib.rs.h"

namespace ivflake {

namespace {

// Far above any useful re-ranking depth; bounds the candidates a file's
// k_factor can ask for.
constexpr float kMaxKFactor = 1024;

uint64_t times(uint64_t a, uint64_t b, const char* what) {
    uint64_t out = 0;
    if (__builtin_mul_overflow(a, b, &out)) {
        fail(ErrorKind::Corrupt, std::string("corrupt index: the size of its ") + what + " overflows");
    }
    return out;
}

void check_head(const faiss::Index& head, const char* structure) {
    if (head.d <= 0 || head.d > (1 << 16) || head.ntotal < 0) {
        fail(ErrorKind::Corrupt,
             std::string("corrupt ") + structure + ": d=" + std::to_string(head.d) +
                     ", ntotal=" + std::to_string(head.ntotal));
    }
    if (head.metric_type != faiss::METRIC_L2 && head.metric_type != faiss::METRIC_INNER_PRODUCT) {
        fail(ErrorKind::Unsupported,
             std::string(structure) + " with metric " + std::to_string(head.metric_type) +
                     ": ivflake supports METRIC_L2 and METRIC_INNER_PRODUCT");
    }
}

// The refine index after the IVF's lists: its head, then its codes skipped.
faiss::IndexFlatCodes* read_refine_index(PrefixReader& r, WrapParse& w) {
    const uint32_t h = r.read_raw<uint32_t>();
    faiss::IndexFlatCodes* codec = nullptr;
    uint64_t bytes = 0;
    if (h == fourcc("IxF2") || h == fourcc("IxFI") || h == fourcc("IxFl")) {
        faiss::IndexFlat* flat = h == fourcc("IxF2") ? new faiss::IndexFlatL2()
                : h == fourcc("IxFI")                ? new faiss::IndexFlatIP()
                                                     : new faiss::IndexFlat();
        codec = flat;
        faiss::read_index_header(flat, &r);
        check_head(*flat, "refine IndexFlat");
        flat->code_size = size_t(flat->d) * sizeof(float);
        // Faiss writes flat codes counted in floats.
        bytes = times(r.read_raw<uint64_t>(), sizeof(float), "refine codes");
    } else if (h == fourcc("IxSQ")) {
        auto* sq = new faiss::IndexScalarQuantizer();
        codec = sq;
        faiss::read_index_header(sq, &r);
        check_head(*sq, "refine IndexScalarQuantizer");
        faiss::read_ScalarQuantizer(&sq->sq, &r);
        check_scalar_quantizer(sq->sq, size_t(sq->d), "refine scalar quantizer");
        sq->code_size = sq->sq.code_size;
        bytes = r.read_raw<uint64_t>();
    } else {
        const char tag[5] = {char(h), char(h >> 8), char(h >> 16), char(h >> 24), 0};
        fail(ErrorKind::Unsupported,
             std::string("an IndexRefine whose refine index is '") + tag +
                     "': ivflake serves refine codes of an IndexFlat or IndexScalarQuantizer");
    }
    w.refine_codec = codec;
    if (bytes != times(uint64_t(codec->ntotal), codec->code_size, "refine codes")) {
        fail(ErrorKind::Corrupt,
             "corrupt refine index: " + std::to_string(bytes) + " bytes of codes for " +
                     std::to_string(codec->ntotal) + " vectors of " +
                     std::to_string(codec->code_size) + " bytes");
    }
    w.refine_codes_offset = r.pos;
    r.skip(bytes, "refine codes");
    return codec;
}

}  // namespace

faiss::Index* read_served(PrefixReader& r, int flags, WrapParse& w) {
    faiss::IndexFlat head;  // scratch: read_index_header fills an Index
    uint32_t h = r.read_raw<uint32_t>();
    if (h == fourcc("IxMp") || h == fourcc("IxM2")) {
        w.id_map = true;
        w.id_map2 = h == fourcc("IxM2");
        faiss::read_index_header(&head, &r);
        check_head(head, "IndexIDMap");
        w.id_map_ntotal = head.ntotal;
        w.id_map_d = head.d;
        w.id_map_metric = head.metric_type;
        h = r.read_raw<uint32_t>();
    }
    if (h == fourcc("IxRF")) {
        w.refine = true;
        faiss::read_index_header(&head, &r);
        check_head(head, "IndexRefine");
        w.refine_ntotal = head.ntotal;
    } else {
        r.pos -= 4;  // the inner index's own tag
    }
    faiss::Index* inner = faiss::read_index(&r, flags);
    if (!w.id_map && !w.refine) {
        return inner;
    }
    // Skip the lists, which follow the IVF's head in this file (on-disk
    // lists are in their own file: nothing to skip).
    auto* pt = dynamic_cast<faiss::IndexPreTransform*>(inner);
    auto* ivf = dynamic_cast<faiss::IndexIVF*>(pt ? pt->index : inner);
    if (!ivf) {
        fail(ErrorKind::Unsupported,
             "an IndexRefine or IndexIDMap around " + name_of(inner) +
                     ": ivflake serves them around an IVF index");
    }
    if (auto* lazy = dynamic_cast<LazyInvertedLists*>(ivf->invlists)) {
        const uint64_t per_entry = uint64_t(lazy->code_size) + sizeof(idx_t);
        uint64_t bytes = 0;
        for (size_t s : lazy->header_sizes) {
            if (__builtin_add_overflow(bytes, times(s, per_entry, "lists"), &bytes)) {
                fail(ErrorKind::Corrupt, "corrupt index: its lists' sizes overflow");
            }
        }
        r.skip(bytes, "inverted lists");
        w.lists_end = r.pos;
    } else if (!dynamic_cast<faiss::OnDiskInvertedLists*>(ivf->invlists)) {
        fail(ErrorKind::Unsupported,
             name_of(ivf) + "'s lists inside an IndexRefine or IndexIDMap: ivflake serves array "
                     "and on-disk lists there, not fast-scan block lists yet");
    }
    if (w.refine) {
        const faiss::IndexFlatCodes* codec = read_refine_index(r, w);
        if (codec->ntotal != w.refine_ntotal || codec->d != inner->d ||
            codec->metric_type != inner->metric_type || inner->ntotal != w.refine_ntotal) {
            fail(ErrorKind::Corrupt,
                 "corrupt IndexRefine: its base index (d=" + std::to_string(inner->d) +
                         ", ntotal=" + std::to_string(inner->ntotal) + "), refine index (d=" +
                         std::to_string(codec->d) + ", ntotal=" + std::to_string(codec->ntotal) +
                         ") and header (ntotal=" + std::to_string(w.refine_ntotal) + ") disagree");
        }
        w.k_factor = r.read_raw<float>();
        if (!std::isfinite(w.k_factor) || w.k_factor < 1 || w.k_factor > kMaxKFactor) {
            fail(ErrorKind::Corrupt,
                 "corrupt IndexRefine: k_factor is " + std::to_string(w.k_factor) +
                         ", not between 1 and " + std::to_string(int(kMaxKFactor)));
        }
    }
    if (w.id_map) {
        const uint64_t count = r.read_raw<uint64_t>();
        if (count != uint64_t(w.id_map_ntotal) || inner->ntotal != w.id_map_ntotal ||
            inner->d != w.id_map_d || inner->metric_type != w.id_map_metric) {
            fail(ErrorKind::Corrupt,
                 "corrupt IndexIDMap: " + std::to_string(count) + " ids for ntotal=" +
                         std::to_string(w.id_map_ntotal) + " (d=" + std::to_string(w.id_map_d) +
                         ") around an index of " + std::to_string(inner->ntotal) +
                         " vectors (d=" + std::to_string(inner->d) + ")");
        }
        w.id_map_offset = r.pos;
        r.skip(times(count, sizeof(idx_t), "id map"), "id map");
    }
    if (r.pos != r.file_len) {
        fail(ErrorKind::Corrupt,
             "corrupt index: " + std::to_string(r.file_len - r.pos) +
                     " bytes follow its last structure");
    }
    return inner;
}

void adopt_wrappers(IvfIndex& out, const WrapParse& w) {
    out.id_map = w.id_map;
    out.id_map2 = w.id_map2;
    out.id_map_offset = w.id_map_offset;
    out.list_data_end = w.lists_end;
    if (w.refine) {
        out.refine_owner.reset(w.refine_codec);
        out.refine_codec = w.refine_codec;
        out.refine_codes_offset = w.refine_codes_offset;
        out.k_factor = w.k_factor;
    }
}

void unwrap(IvfIndex& out) {
    faiss::Index* cur = out.owner.get();
    if (auto* m = dynamic_cast<faiss::IndexIDMap*>(cur)) {
        out.id_map = true;
        out.id_map2 = dynamic_cast<faiss::IndexIDMap2*>(cur) != nullptr;
        out.full_wrapper = cur;
        cur = m->index;
    }
    if (auto* r = dynamic_cast<faiss::IndexRefine*>(cur)) {
        if (!out.full_wrapper) {
            out.full_wrapper = cur;
        }
        out.refine_codec = r->refine_index;
        out.k_factor = r->k_factor;
        cur = r->base_index;
    }
    out.top = cur;
}

std::string describe_wrappers(const IvfIndex& index) {
    std::string s;
    if (index.id_map) {
        s += index.id_map2 ? "IndexIDMap2," : "IndexIDMap,";
    }
    if (index.refine_codec) {
        const bool flat = dynamic_cast<const faiss::IndexFlat*>(index.refine_codec) != nullptr;
        s += flat ? "IndexRefineFlat," : "IndexRefine[" + name_of(index.refine_codec) + "],";
    }
    return s;
}

void refine(
        const IvfIndex& index,
        rust::Slice<const float> x,
        size_t k,
        size_t k_base,
        rust::Slice<const int64_t> base_labels,
        rust::Slice<const float> base_distances,
        rust::Slice<const uint8_t> codes,
        rust::Slice<float> distances,
        rust::Slice<int64_t> labels) {
    const auto* codec = dynamic_cast<const faiss::IndexFlatCodes*>(index.refine_codec);
    if (!codec) {
        fail(ErrorKind::InvalidArgument, "the index has no refine stage");
    }
    const size_t d = size_t(index.top->d);
    if (k == 0 || k_base < k || x.size() % d != 0) {
        fail(ErrorKind::InvalidArgument, "refine: k, k_base or the queries are malformed");
    }
    const size_t n = x.size() / d;
    const size_t cs = codec->code_size;
    check_len(base_labels.size(), n * k_base, "base labels");
    check_len(base_distances.size(), n * k_base, "base distances");
    check_len(codes.size(), n * k_base * cs, "candidate codes");
    check_len(distances.size(), n * k, "distances");
    check_len(labels.size(), n * k, "labels");
    const bool flat = dynamic_cast<const faiss::IndexFlat*>(codec) != nullptr;
    const bool l2 = index.top->metric_type == faiss::METRIC_L2;
    const idx_t ntotal = index.top->ntotal;
    std::vector<float> dis(base_distances.begin(), base_distances.end());
    std::unique_ptr<faiss::FlatCodesDistanceComputer> dc(codec->get_FlatCodesDistanceComputer());
    for (size_t i = 0; i < n; i++) {
        dc->set_query(x.data() + i * d);
        for (size_t j = 0; j < k_base; j++) {
            const size_t ij = i * k_base + j;
            const idx_t label = base_labels[ij];
            if (label < 0) {
                // IndexRefineFlat scores a missing candidate as the worst;
                // IndexRefine stops at the first.
                if (!flat) {
                    break;
                }
                dis[ij] = l2 ? std::numeric_limits<float>::infinity()
                             : -std::numeric_limits<float>::infinity();
                continue;
            }
            if (label >= ntotal) {
                fail(ErrorKind::Corrupt,
                     "a list holds id " + std::to_string(label) +
                             ", outside the refine index's " + std::to_string(ntotal) + " vectors");
            }
            dis[ij] = dc->distance_to_code(codes.data() + ij * cs);
        }
    }
    // The k best of each query's k_base, best first, as IndexRefine orders them.
    auto keep_best = [&](auto cmp) {
        using C = decltype(cmp);
        for (size_t i = 0; i < n; i++) {
            float* out_d = distances.data() + i * k;
            idx_t* out_l = labels.data() + i * k;
            const float* in_d = dis.data() + i * k_base;
            const idx_t* in_l = base_labels.data() + i * k_base;
            faiss::heap_heapify<C>(k, out_d, out_l, in_d, in_l, k);
            if (k_base > k) {
                faiss::heap_addn<C>(k, out_d, out_l, in_d + k, in_l + k, k_base - k);
            }
            faiss::heap_reorder<C>(k, out_d, out_l);
        }
    };
    if (l2) {
        keep_best(faiss::CMax<float, idx_t>());
    } else {
        keep_best(faiss::CMin<float, idx_t>());
    }
}

// Faiss's own search of a wrapped index read in full: the in-memory
// reference. The id filter is translated through the id map as IndexIDMap
// does, and reaches the IVF through IndexRefine's base parameters.
void search_wrapped(
        const IvfIndex& index,
        size_t n,
        const float* x,
        size_t k,
        size_t nprobe,
        float k_factor,
        const faiss::IDSelector* sel,
        float* distances,
        idx_t* labels) {
    const auto* id_map = index.id_map ? dynamic_cast<const faiss::IndexIDMap*>(index.full_wrapper) : nullptr;
    std::unique_ptr<faiss::IDSelectorTranslated> translated;
    if (sel && id_map) {
        translated = std::make_unique<faiss::IDSelectorTranslated>(id_map->id_map, sel);
        sel = translated.get();
    }
    faiss::SearchParametersIVF ivf_params;
    ivf_params.nprobe = nprobe;
    ivf_params.sel = const_cast<faiss::IDSelector*>(sel);
    const faiss::Index* inner = id_map ? id_map->index : index.full_wrapper;
    if (const auto* refine = dynamic_cast<const faiss::IndexRefine*>(inner)) {
        faiss::IndexRefineSearchParameters params;
        params.k_factor = k_factor > 0 ? k_factor : refine->k_factor;
        params.base_index_params = &ivf_params;
        refine->search(idx_t(n), x, idx_t(k), distances, labels, &params);
    } else {
        inner->search(idx_t(n), x, idx_t(k), distances, labels, &ivf_params);
    }
    if (id_map) {
        for (size_t i = 0; i < n * k; i++) {
            if (labels[i] >= 0) {
                labels[i] = id_map->id_map.at(size_t(labels[i]));
            }
        }
    }
}

}  // namespace ivflake
