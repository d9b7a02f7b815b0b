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

/* torch's own dropout mask, drawn faster. On CPU, F.dropout(x, p) is x * (noise / (1 - p))
 * with noise = bernoulli_(1 - p) of torch's default generator: where MKL's Intel-only path
 * is not taken, one uniform double per element, the low 53 bits of two MT19937 outputs (the
 * first the high word) times 2^-53, kept when below 1 - p, drawn in a serial loop of calls.
 * dropout_mt_forward draws the same numbers from the same state, in blocks: `gen` is the
 * bytes of torch.get_rng_state() (MT19937 as torch keeps it: `left` at byte 8, `next` at
 * byte 16, the 624 words as uint64 from byte 24), advanced in place as bernoulli_ would
 * advance it. An element is kept when its 53 bits are below `keep` (= ceil((1 - p) 2^53),
 * the same test in integers); the mask is kept as bits (element i: bit i % 64 of word
 * i / 64, 1 = dropped). dropout_mt_mul then computes torch's product exactly, in forward
 * and backward: out[i] = x[i] * (dropped ? 0 : scale), NaN and the sign of 0 included. */
#define MT_N 624
#define MT_M 397

INLINE uint32_t mt_twist(uint32_t u, uint32_t v) {
    return (((u & 0x80000000u) | (v & 0x7fffffffu)) >> 1) ^ ((v & 1u) ? 0x9908b0dfu : 0u);
}

static void mt_next_state(uint32_t *p) {
    for (int k = 0; k < MT_N - MT_M; k++) p[k] = p[k + MT_M] ^ mt_twist(p[k], p[k + 1]);
    for (int k = MT_N - MT_M; k < MT_N - 1; k++)
        p[k] = p[k + MT_M - MT_N] ^ mt_twist(p[k], p[k + 1]);
    p[MT_N - 1] = p[MT_M - 1] ^ mt_twist(p[MT_N - 1], p[0]);
}

INLINE uint32_t mt_temper(uint32_t y) {
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
}

void NAME(dropout_mt_forward)(int64_t n, uint8_t *gen, uint64_t *mask, int64_t keep,
                              int threads) {
    (void)threads; /* one sequential generator */
    int32_t left;
    uint64_t next, words[MT_N];
    uint32_t st[MT_N], out[2 * 256];
    memcpy(&left, gen + 8, 4);
    memcpy(&next, gen + 16, 8);
    memcpy(words, gen + 24, sizeof(words));
    for (int k = 0; k < MT_N; k++) st[k] = (uint32_t)words[k];
    int64_t idx = (int64_t)next, avail = left - 1; /* outputs left in this block */
    const uint64_t low53 = (1ULL << 53) - 1;
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        const int64_t m = n - i0 < 256 ? n - i0 : 256;
        for (int64_t got = 0; got < 2 * m;) { /* 2 m tempered outputs, block by block */
            if (avail == 0) {
                mt_next_state(st);
                idx = 0;
                avail = MT_N;
            }
            const int64_t take = avail < 2 * m - got ? avail : 2 * m - got;
            VEC for (int64_t k = 0; k < take; k++) out[got + k] = mt_temper(st[idx + k]);
            got += take, idx += take, avail -= take;
        }
        uint64_t *mw = mask + i0 / 64; /* i0 is a multiple of 64 */
        for (int64_t w = 0; w < (m + 63) / 64; w++) {
            uint64_t word = 0;
            const int64_t kn = m - w * 64 < 64 ? m - w * 64 : 64;
            for (int64_t k = 0; k < kn; k++) {
                const int64_t e = w * 64 + k;
                const uint64_t r = (((uint64_t)out[2 * e] << 32) | out[2 * e + 1]) & low53;
                word |= (uint64_t)(r >= (uint64_t)keep) << k;
            }
            mw[w] = word;
        }
    }
    left = (int32_t)(avail + 1);
    next = (uint64_t)idx;
    for (int k = 0; k < MT_N; k++) words[k] = st[k];
    memcpy(gen + 8, &left, 4);
    memcpy(gen + 16, &next, 8);
    memcpy(gen + 24, words, sizeof(words));
}

void NAME(dropout_mt_mul)(int64_t n, const S *x, const uint64_t *mask, double scale, S *out,
                          int threads) {
    const T s = (T)scale;
    (void)threads;
    for (int64_t h = 0; h < (n + 31) / 32; h++) { /* 32-bit halves: the shifts vectorise */
        const uint32_t bits = (uint32_t)(mask[h >> 1] >> ((h & 1) * 32));
        const int64_t i0 = h * 32, m = n - i0 < 32 ? n - i0 : 32;
        VEC for (int64_t k = 0; k < m; k++)
            out[i0 + k] = st(ld(x[i0 + k]) * ((bits >> k) & 1u ? (T)0 : s));
    }
}
