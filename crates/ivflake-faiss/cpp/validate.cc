// Checks every structure Faiss will index with numbers read from the file,
// right after a header is parsed and before anything is searched. Faiss trusts
// what it reads: a neighbour id past the graph, a code size that disagrees with
// the codec, or a list of centroids shorter than nlist * d would send its
// search out of bounds. Each failure names the structure and the field.
//
// Also the first check of all, made while Faiss reads: which structures a file
// may hold at all.
//
// Owns: the shape checks. Must not touch: parsing (shim.cc) or scanning
// (scan.cc).

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexIVFPQFastScan.h>
#include <faiss/IndexIVFRaBitQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/VectorTransform.h>
#include <faiss/impl/HNSW.h>
#include <faiss/impl/ProductQuantizer.h>
#include <faiss/impl/RaBitQuantizer.h>
#include <faiss/impl/ScalarQuantizer.h>

#include "internal.h"

namespace ivflake {

namespace {

// Search-time buffers scale with these; no real index comes near them, and a
// corrupt value past them would make a search allocate without bound.
constexpr int kMaxEfSearch = 1 << 16;
constexpr int kMaxHnswLevels = 64;
constexpr int kMaxNeighborsPerNode = 1 << 16;
constexpr int64_t kMaxDimension = 1 << 20;

template <typename T>
std::string str(T v) {
    return std::to_string(v);
}

[[noreturn]] void corrupt(const std::string& structure, const std::string& what) {
    fail(ErrorKind::Corrupt, "corrupt " + structure + ": " + what);
}

void expect_eq(
        const std::string& structure,
        const char* field,
        uint64_t got,
        uint64_t want) {
    if (got != want) {
        corrupt(structure,
                std::string(field) + " is " + str(got) + ", expected " + str(want));
    }
}

// Faiss reads a bool as one raw byte. Any value but 0 or 1 is undefined
// behaviour the compiler may turn into an out-of-range index: with
// by_residual = 0xff the fast-scan LUT code read out of bounds (a SIGSEGV
// now and then in the mutation suite).
void check_bool(const std::string& structure, const char* field, const bool& value) {
    uint8_t raw = 0;
    std::memcpy(&raw, &value, 1);
    if (raw > 1) {
        corrupt(structure, std::string(field) + " is the byte " + str(int(raw)) + ", not a bool");
    }
}

void check_dimension(const std::string& structure, int64_t d) {
    if (d <= 0 || d > kMaxDimension) {
        corrupt(structure, "d is " + str(d) + ", outside 1.." + str(kMaxDimension));
    }
}

// A NaN or infinite parameter makes NaN distances, and an HNSW walk over NaN
// distances never ends (its candidate heap loses count). Returns the largest
// magnitude, which bounds what a query may hold (see coarse_search).
float check_finite(const float* values, size_t n, const std::string& structure, const char* field) {
    float max_abs = 0;
    for (size_t i = 0; i < n; i++) {
        if (!std::isfinite(values[i])) {
            corrupt(structure, std::string(field) + "[" + str(i) + "] is not finite");
        }
        max_abs = std::max(max_abs, std::fabs(values[i]));
    }
    return max_abs;
}

// IndexFlat (and every IndexFlatCodes) keeps ntotal codes of code_size bytes.
// Returns the largest centroid coordinate's magnitude.
float check_flat(const faiss::IndexFlat& flat, const std::string& structure) {
    check_dimension(structure, flat.d);
    if (flat.ntotal < 0) {
        corrupt(structure, "ntotal is negative");
    }
    expect_eq(structure, "code_size", flat.code_size, size_t(flat.d) * sizeof(float));
    expect_eq(structure, "codes.size()", flat.codes.size(), size_t(flat.ntotal) * flat.code_size);
    return check_finite(flat.get_xb(), size_t(flat.ntotal) * flat.d, structure, "centroids");
}

// The HNSW graph: every index its search walks must stay inside the arrays.
void check_hnsw_graph(const faiss::HNSW& g, int64_t ntotal, const std::string& structure) {
    const auto& cum = g.cum_nneighbor_per_level;
    if (cum.size() < 2 || cum.size() > size_t(kMaxHnswLevels) + 1 || cum[0] != 0) {
        corrupt(structure,
                "cum_nneighbor_per_level has " + str(cum.size()) +
                        " entries (needs 2.." + str(kMaxHnswLevels + 1) + ", starting at 0)");
    }
    for (size_t l = 1; l < cum.size(); l++) {
        if (cum[l] < cum[l - 1] || cum[l] > kMaxNeighborsPerNode) {
            corrupt(structure,
                    "cum_nneighbor_per_level[" + str(l) + "] = " + str(cum[l]) +
                            " is not monotone or exceeds " + str(kMaxNeighborsPerNode));
        }
    }
    expect_eq(structure, "levels.size()", g.levels.size(), uint64_t(ntotal));
    expect_eq(structure, "offsets.size()", g.offsets.size(), uint64_t(ntotal) + 1);
    if (g.offsets[0] != 0) {
        corrupt(structure, "offsets[0] is " + str(g.offsets[0]) + ", expected 0");
    }
    const int top_level = int(cum.size()) - 1;
    int max_level = 0;
    for (int64_t i = 0; i < ntotal; i++) {
        const int level = g.levels[i];
        if (level < 1 || level > top_level) {
            corrupt(structure,
                    "levels[" + str(i) + "] = " + str(level) + ", outside 1.." +
                            str(top_level));
        }
        max_level = std::max(max_level, level);
        const size_t begin = g.offsets[i];
        const size_t end = g.offsets[i + 1];
        if (end < begin || end - begin != size_t(cum[level])) {
            corrupt(structure,
                    "offsets[" + str(i + 1) + "] - offsets[" + str(i) + "] is not the " +
                            str(cum[level]) + " neighbours of a level-" + str(level) + " node");
        }
    }
    expect_eq(structure, "neighbors.size()", g.neighbors.size(), g.offsets[ntotal]);
    for (size_t j = 0; j < g.neighbors.size(); j++) {
        const auto n = g.neighbors[j];
        if (n < -1 || n >= ntotal) {
            corrupt(structure,
                    "neighbors[" + str(j) + "] = " + str(n) + ", outside -1.." + str(ntotal - 1));
        }
    }
    if (ntotal > 0) {
        if (g.max_level != max_level - 1) {
            corrupt(structure,
                    "max_level is " + str(g.max_level) + " but the highest node is at level " +
                            str(max_level - 1));
        }
        if (g.entry_point < 0 || g.entry_point >= ntotal ||
            g.levels[g.entry_point] - 1 != g.max_level) {
            corrupt(structure,
                    "entry_point " + str(g.entry_point) + " is not a node of the top level " +
                            str(g.max_level));
        }
    }
    if (g.efSearch < 1 || g.efSearch > kMaxEfSearch) {
        corrupt(structure, "efSearch is " + str(g.efSearch) + ", outside 1.." + str(kMaxEfSearch));
    }
}

// The coarse quantizer: nlist centroids of the IVF's dimension, in a flat
// index or an HNSW graph over one. Anything else is not a quantizer ivflake
// has checks for, so it is refused rather than trusted.
float check_quantizer(const faiss::IndexIVF& ivf) {
    const faiss::Index* q = ivf.quantizer;
    if (q->ntotal != idx_t(ivf.nlist) || q->d != ivf.d) {
        fail(ErrorKind::Corrupt,
             "the coarse quantizer holds " + str(q->ntotal) + " centroids of d=" + str(q->d) +
                     " but the index has nlist=" + str(ivf.nlist) + ", d=" + str(ivf.d));
    }
    if (q->metric_type != faiss::METRIC_L2 && q->metric_type != faiss::METRIC_INNER_PRODUCT) {
        corrupt("coarse quantizer " + name_of(q),
                "metric_type is " + str(int(q->metric_type)) + ", not L2 or inner product");
    }
    if (const auto* flat = dynamic_cast<const faiss::IndexFlat*>(q)) {
        return check_flat(*flat, "coarse quantizer " + name_of(q));
    }
    if (const auto* hnsw = dynamic_cast<const faiss::IndexHNSWFlat*>(q)) {
        const std::string structure = "HNSW coarse quantizer";
        const auto* storage = dynamic_cast<const faiss::IndexFlat*>(hnsw->storage);
        if (!storage) {
            fail(ErrorKind::Unsupported,
                 "an HNSW coarse quantizer whose storage is " +
                         (hnsw->storage ? name_of(hnsw->storage) : std::string("missing")) +
                         "; ivflake serves HNSW quantizers over IndexFlat");
        }
        const float max_abs = check_flat(*storage, structure + " storage");
        expect_eq(structure, "storage ntotal", storage->ntotal, hnsw->ntotal);
        expect_eq(structure, "storage d", storage->d, hnsw->d);
        check_hnsw_graph(hnsw->hnsw, hnsw->ntotal, structure + " graph");
        return max_abs;
    }
    fail(ErrorKind::Unsupported,
         "coarse quantizer " + name_of(q) +
                 ": ivflake serves IndexFlat and IndexHNSWFlat quantizers");
}

// What Faiss's scanners assume of a product quantizer.
void check_pq(const faiss::ProductQuantizer& pq, const faiss::IndexIVF& ivf, const std::string& structure) {
    expect_eq(structure, "d", pq.d, size_t(ivf.d));
    if (pq.M == 0 || pq.d % pq.M != 0) {
        corrupt(structure, "M is " + str(pq.M) + ", not a divisor of d=" + str(pq.d));
    }
    if (pq.nbits < 1 || pq.nbits > 16) {
        corrupt(structure, "nbits is " + str(pq.nbits) + ", outside 1..16");
    }
    expect_eq(structure, "dsub", pq.dsub, pq.d / pq.M);
    expect_eq(structure, "ksub", pq.ksub, size_t(1) << pq.nbits);
    expect_eq(structure, "code_size", pq.code_size, (pq.M * pq.nbits + 7) / 8);
    expect_eq(structure, "centroids.size()", pq.centroids.size(), pq.d * pq.ksub);
    check_finite(pq.centroids.data(), pq.centroids.size(), structure, "centroids");
    expect_eq(structure, "the index's code_size", ivf.code_size, pq.code_size);
}

void check_sq(const faiss::ScalarQuantizer& sq, const faiss::IndexIVF& ivf) {
    check_scalar_quantizer(sq, size_t(ivf.d), "scalar quantizer");
    expect_eq("scalar quantizer", "the index's code_size", ivf.code_size, sq.code_size);
}

}  // namespace

void check_scalar_quantizer(const faiss::ScalarQuantizer& sq, size_t d, const std::string& structure) {
    if (sq.qtype < faiss::ScalarQuantizer::QT_8bit ||
        sq.qtype > faiss::ScalarQuantizer::QT_8bit_direct_signed) {
        corrupt(structure, "qtype is " + str(int(sq.qtype)) + ", not a known type");
    }
    expect_eq(structure, "d", sq.d, d);
    const faiss::ScalarQuantizer expected(sq.d, sq.qtype);
    expect_eq(structure, "code_size", sq.code_size, expected.code_size);
    size_t trained = 0;
    switch (sq.qtype) {
        case faiss::ScalarQuantizer::QT_8bit:
        case faiss::ScalarQuantizer::QT_4bit:
        case faiss::ScalarQuantizer::QT_6bit:
            trained = 2 * sq.d;  // a min and a range per dimension
            break;
        case faiss::ScalarQuantizer::QT_8bit_uniform:
        case faiss::ScalarQuantizer::QT_4bit_uniform:
            trained = 2;  // one min and range for all
            break;
        default:
            break;  // fp16, bf16 and the direct types need no training
    }
    expect_eq(structure, "trained.size()", sq.trained.size(), trained);
    check_finite(sq.trained.data(), sq.trained.size(), structure, "trained");
}

namespace {

void check_codec(const faiss::IndexIVF& ivf) {
    if (dynamic_cast<const faiss::IndexIVFFlat*>(&ivf)) {
        expect_eq("IndexIVFFlat", "code_size", ivf.code_size, size_t(ivf.d) * sizeof(float));
    } else if (const auto* fs = dynamic_cast<const faiss::IndexIVFPQFastScan*>(&ivf)) {
        check_pq(fs->pq, ivf, "fast-scan product quantizer");
        // The scan implementations Faiss 1.12 has (IndexIVFFastScan.h); +100
        // forces single-threaded scanning.
        const int implem = fs->implem % 100;
        if (fs->implem < 0 || fs->implem >= 200 ||
            !(implem <= 2 || (implem >= 10 && implem <= 15))) {
            corrupt("IndexIVFPQFastScan", "implem is " + str(fs->implem) + ", not an implementation");
        }
        if (fs->pq.nbits != 4 || fs->M != fs->pq.M || fs->ksub != 16 || fs->nbits != 4) {
            corrupt("IndexIVFPQFastScan",
                    "PQ of M=" + str(fs->pq.M) + ", nbits=" + str(fs->pq.nbits) +
                            " in a fast-scan index of M=" + str(fs->M) + ", nbits=" + str(fs->nbits));
        }
    } else if (const auto* pq = dynamic_cast<const faiss::IndexIVFPQ*>(&ivf)) {
        check_pq(pq->pq, ivf, "product quantizer");
    } else if (const auto* sq = dynamic_cast<const faiss::IndexIVFScalarQuantizer*>(&ivf)) {
        check_sq(sq->sq, ivf);
    } else if (const auto* rq = dynamic_cast<const faiss::IndexIVFRaBitQ*>(&ivf)) {
        const faiss::RaBitQuantizer expected(ivf.d, ivf.metric_type);
        if (rq->rabitq.d != size_t(ivf.d) || rq->rabitq.code_size != expected.code_size ||
            ivf.code_size != expected.code_size || rq->rabitq.metric_type != ivf.metric_type) {
            corrupt("IndexIVFRaBitQ",
                    "quantizer of d=" + str(rq->rabitq.d) + " with " + str(rq->rabitq.code_size) +
                            "-byte codes in an index of d=" + str(ivf.d) + " with " +
                            str(ivf.code_size) + "-byte codes (expected " +
                            str(expected.code_size) + ")");
        }
        if (rq->qb > 8) {
            corrupt("IndexIVFRaBitQ", "qb is " + str(int(rq->qb)) + ", outside 0..8");
        }
    }
}

// Pre-transforms apply matrices whose sizes come from the file.
void check_transforms(const faiss::IndexPreTransform& pt, int64_t ivf_d) {
    if (pt.chain.empty()) {
        corrupt("IndexPreTransform", "the chain is empty");
    }
    int64_t d = pt.d;
    for (size_t i = 0; i < pt.chain.size(); i++) {
        const faiss::VectorTransform* vt = pt.chain[i];
        const std::string structure = "pre-transform " + str(i) + " (" + name_of(vt) + ")";
        expect_eq(structure, "d_in", vt->d_in, d);
        check_dimension(structure, vt->d_out);
        if (!vt->is_trained) {
            corrupt(structure, "is not trained");
        }
        if (const auto* lt = dynamic_cast<const faiss::LinearTransform*>(vt)) {
            expect_eq(structure, "A.size()", lt->A.size(), size_t(vt->d_in) * vt->d_out);
            check_finite(lt->A.data(), lt->A.size(), structure, "A");
            if (lt->have_bias) {
                expect_eq(structure, "b.size()", lt->b.size(), size_t(vt->d_out));
                check_finite(lt->b.data(), lt->b.size(), structure, "b");
            }
        } else if (const auto* remap = dynamic_cast<const faiss::RemapDimensionsTransform*>(vt)) {
            expect_eq(structure, "map.size()", remap->map.size(), size_t(vt->d_out));
            for (int m : remap->map) {
                if (m < -1 || m >= vt->d_in) {
                    corrupt(structure, "maps to dimension " + str(m) + " of " + str(vt->d_in));
                }
            }
        } else if (const auto* centering = dynamic_cast<const faiss::CenteringTransform*>(vt)) {
            expect_eq(structure, "mean.size()", centering->mean.size(), size_t(vt->d_in));
            check_finite(centering->mean.data(), centering->mean.size(), structure, "mean");
            expect_eq(structure, "d_out", vt->d_out, vt->d_in);
        } else if (dynamic_cast<const faiss::NormalizationTransform*>(vt)) {
            expect_eq(structure, "d_out", vt->d_out, vt->d_in);
        } else {
            fail(ErrorKind::Unsupported,
                 "pre-transform " + name_of(vt) +
                         ": ivflake serves linear (OPQ, PCA, rotation), remapping, "
                         "centering and normalization transforms");
        }
        d = vt->d_out;
    }
    expect_eq("IndexPreTransform", "the chain's output d", d, ivf_d);
}

}  // namespace

namespace {

// Faiss's reader picks each structure by a fourcc read from the file, and
// some of its readers trust what follows (one opens a file named by the index:
// "ilod"). So every 4-byte field that equals a tag Faiss 1.12 knows must be one
// of the structures ivflake serves and validates (validate.cc); anything else
// is refused before Faiss reads it. A plain int field equal to one of these
// tags would be over a billion, which no field of a served structure holds.
// The tags served pass: IxPT; LTra PCAm PcAm Pcam rrot Viqm RmDT VNrm VCnt;
// IwFl IwPQ IwSQ IwSq IwPf Iwrq; IxF2 IxFI IxFl IHNf; ilar ilbl full sprs;
// IxSQ (a refine index). IxRF, IxMp and IxM2 are read by wrap.cc, and
// "ilod" only when the lists are not read (PrefixReader says so).
// Every other tag Faiss 1.12's reader knows, with what it stands for.
struct UnservedTag {
    const char* tag;
    const char* name;
};
const UnservedTag kUnservedTags[] = {
        {"IBFf", "IndexBinaryFromFloat"},
        {"IBHc", "IndexBinaryHNSWCagra"},
        {"IBHf", "IndexBinaryHNSW"},
        {"IBHh", "IndexBinaryHash"},
        {"IBHm", "IndexBinaryMultiHash"},
        {"IBM2", "IndexBinaryIDMap2"},
        {"IBMp", "IndexBinaryIDMap"},
        {"IBwF", "IndexBinaryIVF"},
        {"IBxF", "IndexBinaryFlat"},
        {"IHN2", "IndexHNSW2Level"},
        {"IHNc", "IndexHNSWCagra"},
        {"IHc2", "IndexHNSWCagra"},
        {"IHNp", "IndexHNSWPQ"},
        {"IHNs", "IndexHNSWSQ"},
        {"ILfs", "IndexLocalSearchQuantizerFastScan"},
        {"INNf", "IndexNNDescentFlat"},
        {"INSf", "IndexNSGFlat"},
        {"INSp", "IndexNSGPQ"},
        {"INSs", "IndexNSGSQ"},
        {"IPLf", "IndexProductLocalSearchQuantizerFastScan"},
        {"IPRf", "IndexProductResidualQuantizerFastScan"},
        {"IPfs", "IndexPQFastScan"},
        {"IRMf", "IndexRowwiseMinMax"},
        {"IRMh", "IndexRowwiseMinMaxFP16"},
        {"IRfs", "IndexResidualQuantizerFastScan"},
        {"IVLf", "IndexIVFLocalSearchQuantizerFastScan"},
        {"IVRf", "IndexIVFResidualQuantizerFastScan"},
        {"ImRQ", "ResidualCoarseQuantizer"},
        {"Imiq", "MultiIndexQuantizer"},
        {"IvFL", "IndexIVFFlat (legacy format)"},
        {"IvFl", "IndexIVFFlat (legacy format)"},
        {"IvPQ", "IndexIVFPQ (legacy format)"},
        {"IvQR", "IndexIVFPQR (legacy format)"},
        {"IvSQ", "IndexIVFScalarQuantizer (legacy format)"},
        {"IwFd", "IndexIVFFlatDedup"},
        {"IwIQ", "IndexIVFIndependentQuantizer"},
        {"IwLS", "IndexIVFLocalSearchQuantizer"},
        {"IwPL", "IndexIVFProductLocalSearchQuantizer"},
        {"IwPR", "IndexIVFProductResidualQuantizer"},
        {"IwQR", "IndexIVFPQR"},
        {"IwRQ", "IndexIVFResidualQuantizer"},
        {"IwSh", "IndexIVFSpectralHash"},
        {"Ix2L", "Index2Layer"},
        {"IxHE", "IndexLSH"},
        {"IxHe", "IndexLSH"},
        {"IxLS", "IndexLocalSearchQuantizer"},
        {"IxLa", "IndexLattice"},
        {"IxPL", "IndexProductLocalSearchQuantizer"},
        {"IxPQ", "IndexPQ"},
        {"IxPo", "IndexPQ"},
        {"IxPq", "IndexPQ"},
        {"IxPR", "IndexProductResidualQuantizer"},
        {"IxRQ", "IndexResidualQuantizer"},
        {"IxRq", "IndexResidualQuantizer"},
        {"Ixrq", "IndexRaBitQ"},
        {"NPLf", "IndexIVFProductLocalSearchQuantizerFastScan"},
        {"NPRf", "IndexIVFProductResidualQuantizerFastScan"},
        {"Viqt", "ITQTransform"},
        {"il00", "null inverted lists"},
        {"il__", "inverted lists of an unknown kind"},
        {"null", "an empty index slot"},
};

}  // namespace

void refuse_unserved_structure(uint32_t h) {
    for (const auto& unserved : kUnservedTags) {
        if (fourcc(unserved.tag) == h) {
            fail(ErrorKind::Unsupported,
                 std::string("the file holds a Faiss ") + unserved.name + " ('" + unserved.tag +
                         "'), which ivflake does not serve: it serves " + supported_types());
        }
    }
}


void validate_structures(IvfIndex& index) {
    const faiss::IndexIVF& ivf = require_ivf(index);
    check_dimension(name_of(&ivf), ivf.d);
    check_bool(name_of(&ivf), "by_residual", ivf.by_residual);
    check_bool(name_of(&ivf), "is_trained", ivf.is_trained);
    check_bool(name_of(index.top), "is_trained", index.top->is_trained);
    if (ivf.nlist == 0 || ivf.ntotal < 0) {
        corrupt(name_of(&ivf), "nlist is " + str(ivf.nlist) + " and ntotal " + str(ivf.ntotal));
    }
    if (ivf.direct_map.type != faiss::DirectMap::NoMap &&
        ivf.direct_map.type != faiss::DirectMap::Array &&
        ivf.direct_map.type != faiss::DirectMap::Hashtable) {
        corrupt(name_of(&ivf), "direct map type " + str(int(ivf.direct_map.type)) + " is unknown");
    }
    index.centroid_max_abs = check_quantizer(ivf);
    check_bool("coarse quantizer", "is_trained", ivf.quantizer->is_trained);
    check_codec(ivf);
    if (index.transform) {
        check_transforms(*index.transform, ivf.d);
    } else if (index.top->d != ivf.d) {
        corrupt(name_of(&ivf), "the top index's d is not the IVF's");
    }
}

}  // namespace ivflake
