/* Dropout of large CPU tensors in one pass: a counter-based generator (splitmix64 of the
 * seed and the index of each group of four elements) gives every element 16 random bits,
 * so the mask depends on the seed alone, not on the threads or the order of the work.
 * An element is dropped when its bits are below `level` (P = level / 65536), the others are
 * scaled; the mask is kept as bits (element i: bit i % 64 of word i / 64), 1/8 of a bool
 * mask. Torch's CPU path draws 64 bits per element from one sequential generator
 * (bernoulli_, or random_ then a comparison) and applies a byte mask in two more passes.
 *
 * dropout_forward:  drop(i) = bits(i) < level;  out[i] = drop(i) ? 0 : x[i] * scale
 * dropout_backward: out[i] = drop(i) ? 0 : g[i] * scale
 * out may be x (or g): in place. A dropped NaN or infinity becomes 0, as with masked_fill.
 * Elements of type S (common.h): in bfloat16 the kept ones are scaled in float and rounded
 * to nearest even, as torch's bfloat16 arithmetic does.
 */
#include "common.h"
#ifdef __AVX512BW__
#include <immintrin.h>
#endif

#define GROUP 1024 /* elements per work item: 256 draws of 64 bits, 16 mask words */

INLINE uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

INLINE void apply(int64_t m, const S *x, const uint64_t *mask, T s, S *out) {
    VEC for (int64_t i = 0; i < m; i++)
        out[i] = (mask[i >> 6] >> (i & 63)) & 1 ? (S)0 : st(ld(x[i]) * s);
}

void NAME(dropout_forward)(int64_t n, const S *x, S *out, uint64_t *mask, int64_t seed,
                           int64_t level, double scale, int threads) {
    const T s = (T)scale;
    const int16_t lv = (int16_t)(level - 32768); /* bits as signed 16-bit: compare there */
    const int64_t groups = (n + GROUP - 1) / GROUP;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t g = 0; g < groups; g++) {
        union { uint64_t word[GROUP / 4]; int16_t bits[GROUP]; } r; /* element i: bits[i] */
        VEC for (int k = 0; k < GROUP / 4; k++)
            r.word[k] = mix64((uint64_t)seed +
                              (uint64_t)(g * (GROUP / 4) + k) * 0x9e3779b97f4a7c15ULL);
        const int64_t i0 = g * GROUP, m = n - i0 < GROUP ? n - i0 : GROUP;
        uint64_t *mg = mask + i0 / 64;
        for (int w = 0; w < (m + 63) / 64; w++) {
#ifdef __AVX512BW__ /* 32 comparisons into a mask register at a time */
            const __m512i lvv = _mm512_set1_epi16(lv);
            const uint64_t lo = _mm512_cmplt_epi16_mask(_mm512_loadu_si512(r.bits + w * 64), lvv);
            const uint64_t hi = _mm512_cmplt_epi16_mask(_mm512_loadu_si512(r.bits + w * 64 + 32),
                                                         lvv);
            mg[w] = lo | hi << 32;
#else
            uint64_t word = 0;
            for (int k = 0; k < 64; k++) word |= (uint64_t)(r.bits[w * 64 + k] < lv) << k;
            mg[w] = word;
#endif
        }
        apply(m, x + i0, mg, s, out + i0);
    }
}

void NAME(dropout_backward)(int64_t n, const S *g, const uint64_t *mask, double scale,
                            S *out, int threads) {
    const T s = (T)scale;
    const int64_t groups = (n + GROUP - 1) / GROUP;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < groups; b++) {
        const int64_t i0 = b * GROUP, m = n - i0 < GROUP ? n - i0 : GROUP;
        apply(m, g + i0, mask + i0 / 64, s, out + i0);
    }
}
