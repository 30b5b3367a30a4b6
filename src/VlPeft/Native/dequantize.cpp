// Dequantization kernels for the quantized frozen base (Nn/Quantization): one pass from the stored codes to the compute
// dtype, where libtorch needs a gather, a multiply and a cast (three memory passes and their temporaries). Built by
// src/VlPeft/VlPeft.csproj with the system C++ compiler into libvlpeft_native.so; without it the C# side falls back to
// libtorch operations. Rows are split over OpenMP threads: the library links libgomp.so.1, which resolves to the
// libgomp libtorch loaded (same soname), so the kernels and libtorch's matmuls share one thread pool instead of two
// pools contending for the cores. Every path computes value = level · scale in fp32 (no fused multiply-add: built with
// -ffp-contract=off) and rounds to bf16 to nearest even as libtorch's cast does, so all paths give the same bits.
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <immintrin.h>

namespace {

enum Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };
enum OutType { Fp32 = 0, Bf16 = 1 };

// fp32 → bf16 as c10::BFloat16 does: NaN → 0x7FC0, otherwise round to nearest, ties to even.
inline uint16_t to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if (f != f) return 0x7FC0;
    return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

// A 4-bit weight's per-block factor: the fp32 absmax, or with double quantization its 8-bit code decoded as
// libtorch does it (nested_code[code] · nested_absmax[block / nested_block], then + offset, each rounded to fp32).
struct BlockScales {
    const float* absmax;
    const uint8_t* codes;
    const float* nested_code;
    const float* nested_absmax;
    int64_t nested_block;
    float offset;
    float at(int64_t b) const {
        if (absmax) return absmax[b];
        float scaled = nested_code[codes[b]] * nested_absmax[b / nested_block];
        return scaled + offset;
    }
};

inline void store_scalar(void* out, int64_t i, float v, int type) {
    if (type == Fp32) static_cast<float*>(out)[i] = v;
    else static_cast<uint16_t*>(out)[i] = to_bf16(v);
}

void nf4_scalar(const uint8_t* packed, const BlockScales& scales, const float* code, int64_t block, int64_t first, int64_t count, void* out, int type) {
    for (int64_t i = 0; i < count; i++) {
        int64_t v = first + i;
        uint8_t byte = packed[v >> 1];
        int level = (v & 1) ? (byte & 15) : (byte >> 4);
        store_scalar(out, i, code[level] * scales.at(v / block), type);
    }
}

// count int8 values of one row, all with the row's factor.
void int8_scalar(const int8_t* q, float scale, int64_t count, void* out, int type) {
    for (int64_t c = 0; c < count; c++) store_scalar(out, c, (float)q[c] * scale, type);
}

// Where output value i starts.
inline void* at(void* out, int64_t i, int type) { return static_cast<char*>(out) + i * (type == Fp32 ? 4 : 2); }

// The walk over a 4-bit range both vector paths share. A vector takes Width values inside one block, starting on a byte
// boundary: a leading odd value, the end of a block the range entered midway and the ragged tail go scalar, and each run
// of whole vectors inside one block is handed to vectors(from, to, scale) with that block's factor. One division per
// call: then the block index and the position in it advance with the walk.
template <int Width, typename Vectors>
__attribute__((always_inline)) inline void nf4_walk(const uint8_t* packed, const BlockScales& scales, const float* code, int64_t block,
                                                    int64_t first, int64_t count, void* out, int type, Vectors vectors) {
    int64_t i = (first & 1) && count > 0 ? 1 : 0;
    nf4_scalar(packed, scales, code, block, first, i, out, type);
    int64_t b = (first + i) / block, pos = (first + i) - b * block;
    while (block % Width == 0 && i + Width <= count) {   // otherwise the scalar tail does it all
        if (block - pos < Width) {
            nf4_scalar(packed, scales, code, block, first + i, block - pos, at(out, i, type), type);
            i += block - pos;
            b++, pos = 0;
            continue;
        }
        int64_t run = std::min(block - pos, count - i) / Width * Width;
        vectors(i, i + run, scales.at(b));
        i += run;
        pos += run;
        if (pos == block) b++, pos = 0;
    }
    nf4_scalar(packed, scales, code, block, first + i, count - i, at(out, i, type), type);
}

// ---- AVX2: 8 values per vector; the 16-level lookup is two 8-entry permutes and a blend on bit 3.

__attribute__((target("avx2,fma"))) inline void store8(void* out, int64_t i, __m256 v, int type) {
    if (type == Fp32) { _mm256_storeu_ps(static_cast<float*>(out) + i, v); return; }
    __m256i u = _mm256_castps_si256(v);
    __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF),
        _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1)))), 16);
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    rounded = _mm256_blendv_epi8(rounded, _mm256_set1_epi32(0x7FC0), nan);
    __m128i packed16 = _mm_packus_epi32(_mm256_castsi256_si128(rounded), _mm256_extracti128_si256(rounded, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(out) + i), packed16);
}

__attribute__((target("avx2,fma"))) void nf4_avx2(const uint8_t* packed, const BlockScales& scales, const float* code, int64_t block, int64_t first, int64_t count, void* out, int type) {
    const __m256 low = _mm256_loadu_ps(code), high = _mm256_loadu_ps(code + 8);
    nf4_walk<8>(packed, scales, code, block, first, count, out, type, [&](int64_t from, int64_t to, float s) __attribute__((target("avx2,fma"))) {
        __m256 scale = _mm256_set1_ps(s);
        for (int64_t i = from; i < to; i += 8) {
            uint32_t four;
            std::memcpy(&four, packed + ((first + i) >> 1), 4);
            __m256i bytes = _mm256_cvtepu8_epi32(_mm_cvtsi32_si128((int)four));
            // value 2k is byte k's high nibble, 2k + 1 its low one: duplicate each byte, then shift alternately.
            __m256i dup = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
            __m256i idx = _mm256_and_si256(_mm256_srlv_epi32(dup, _mm256_setr_epi32(4, 0, 4, 0, 4, 0, 4, 0)), _mm256_set1_epi32(15));
            __m256 lo = _mm256_permutevar8x32_ps(low, idx), hi = _mm256_permutevar8x32_ps(high, idx);
            __m256 upper = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));   // bit 3 → sign bit selects the high table
            store8(out, i, _mm256_mul_ps(_mm256_blendv_ps(lo, hi, upper), scale), type);
        }
    });
}

__attribute__((target("avx2,fma"))) void int8_avx2(const int8_t* q, float s, int64_t count, void* out, int type) {
    __m256 scale = _mm256_set1_ps(s);
    int64_t c = 0;
    for (; c + 8 <= count; c += 8) {
        int64_t eight;
        std::memcpy(&eight, q + c, 8);
        store8(out, c, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(eight))), scale), type);
    }
    int8_scalar(q + c, s, count - c, at(out, c, type), type);
}

// ---- AVX-512: 16 values per vector; the 16 levels fit one register, so the lookup is a single permute.

__attribute__((target("avx512f,avx512bw"))) inline void store16(void* out, int64_t i, __m512 v, int type) {
    if (type == Fp32) { _mm512_storeu_ps(static_cast<float*>(out) + i, v); return; }
    __m512i u = _mm512_castps_si512(v);
    __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF),
        _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1)))), 16);
    rounded = _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<uint16_t*>(out) + i), _mm512_cvtepi32_epi16(rounded));
}

__attribute__((target("avx512f,avx512bw"))) void nf4_avx512(const uint8_t* packed, const BlockScales& scales, const float* code, int64_t block, int64_t first, int64_t count, void* out, int type) {
    const __m512 levels = _mm512_loadu_ps(code);
    const __m512i pairs = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i shifts = _mm512_setr_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
    nf4_walk<16>(packed, scales, code, block, first, count, out, type, [&](int64_t from, int64_t to, float s) __attribute__((target("avx512f,avx512bw"))) {
        __m512 scale = _mm512_set1_ps(s);
        for (int64_t i = from; i < to; i += 16) {
            __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed + ((first + i) >> 1))));
            __m512i idx = _mm512_and_si512(_mm512_srlv_epi32(_mm512_permutexvar_epi32(pairs, bytes), shifts), _mm512_set1_epi32(15));
            store16(out, i, _mm512_mul_ps(_mm512_permutexvar_ps(idx, levels), scale), type);
        }
    });
}

__attribute__((target("avx512f,avx512bw"))) void int8_avx512(const int8_t* q, float s, int64_t count, void* out, int type) {
    __m512 scale = _mm512_set1_ps(s);
    int64_t c = 0;
    for (; c + 16 <= count; c += 16)
        store16(out, c, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + c)))), scale), type);
    int8_scalar(q + c, s, count - c, at(out, c, type), type);
}

int best_isa() {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return Avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Avx2;
    return Scalar;
}

int pick(int max_isa) {
    static const int best = best_isa();
    return max_isa < best ? max_isa : best;
}

}  // namespace

extern "C" {

// The instruction set the kernels use at most on this CPU (0 scalar, 1 AVX2, 2 AVX-512).
int vlpeft_best_isa() { return pick(Avx512); }

// Rows [row0, row0 + rows) × columns [col0, col0 + cols) of a 4-bit weight [*, in_features] — or, when row_ids is not
// null, rows row_ids[0 .. rows) (an embedding lookup; row0 unused): packed holds two level indices per byte (high
// nibble first) of the row-major values, code the 16 levels; each block of `block` values is scaled by absmax[b] or,
// when absmax is null, by its double-quantized factor (see BlockScales). out receives rows × cols values (fp32 or
// bf16), row-major.
void vlpeft_dequantize_4bit(const uint8_t* packed, const float* absmax, const uint8_t* absmax_codes, const float* nested_code,
                            const float* nested_absmax, int64_t nested_block, float offset, const float* code, int64_t block,
                            int64_t in_features, int64_t row0, int64_t rows, const int64_t* row_ids, int64_t col0, int64_t cols, void* out,
                            int out_type, int max_isa) {
    auto kernel = pick(max_isa) == Avx512 ? nf4_avx512 : pick(max_isa) == Avx2 ? nf4_avx2 : nf4_scalar;
    const BlockScales scales{absmax, absmax_codes, nested_code, nested_absmax, nested_block, offset};
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        kernel(packed, scales, code, block, (row_ids ? row_ids[r] : row0 + r) * in_features + col0, cols, at(out, r * cols, out_type), out_type);
}

// The same block (or rows) of an int8 weight [*, in_features]: value = q · (row_absmax[row] / 127).
void vlpeft_dequantize_int8(const int8_t* q, const float* row_absmax, int64_t in_features, int64_t row0, int64_t rows,
                            const int64_t* row_ids, int64_t col0, int64_t cols, void* out, int out_type, int max_isa) {
    auto kernel = pick(max_isa) == Avx512 ? int8_avx512 : pick(max_isa) == Avx2 ? int8_avx2 : int8_scalar;
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t row = row_ids ? row_ids[r] : row0 + r;
        kernel(q + row * in_features + col0, row_absmax[row] / 127.0f, cols, at(out, r * cols, out_type), out_type);
    }
}

}
