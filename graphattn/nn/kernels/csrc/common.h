/* What both native kernels share: the element type T chosen at compile time, entry-point
 * names, vectorised loops, a vectorisable exp, row prefetches, and the dispatch that runs a
 * row body over all rows with C (channels per head) a constant where it is common.
 *
 * graphattn/nn/native.py compiles every kernel with -DT=float -DSUF=f32 -DEXP=expf
 * -DSPECIALISE and -DT=double -DSUF=f64 -DEXP=exp, the CSR and dropout kernels also with
 * -DT=float -DSUF=bf16 -DEXP=expf -DSPECIALISE -DBF16, and links the objects into one
 * library.
 */
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_thread_num(void) { return 0; }
#endif

#if !defined(T) || !defined(SUF) || !defined(EXP)
#error "compile with -DT=float -DSUF=f32 -DEXP=expf (or double, f64, exp)"
#endif

/* S, the element type of the large buffers (node rows, edge embeddings, dropout's tensors):
 * T itself, or with -DBF16 (and T = float) bfloat16, held as uint16_t bits: loaded into T
 * exactly, stored rounded to nearest even (torch's rounding). Arithmetic is always in T. */
#ifdef BF16
typedef uint16_t S;
static inline __attribute__((always_inline)) T ld(S v) {
    union { uint32_t u; float f; } c = {.u = (uint32_t)v << 16};
    return c.f;
}
static inline __attribute__((always_inline)) S st(T f) { /* a NaN stays a (quiet) NaN */
    union { float f; uint32_t u; } c = {.f = f};
    const uint32_t nan = (c.u >> 16) | 0x40u, even = (c.u + 0x7fffu + ((c.u >> 16) & 1u)) >> 16;
    return (S)((c.u & 0x7fffffffu) > 0x7f800000u ? nan : even); /* a select: vectorises */
}
#else
typedef T S;
#define ld(v) (v)
#define st(v) (v)
#endif
#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define NAME(name) CAT(name, SUF) /* csr_attention_forward -> csr_attention_forward_f32 */
#define INLINE static inline __attribute__((always_inline))
#define VEC _Pragma("omp simd") /* channel loops: independent lanes, whatever aliases */

#define AHEAD 8 /* edges: rows are prefetched this far ahead (the gathers are latency bound) */

INLINE void prefetch_row(const S *row, int64_t n) { /* n elements of S */
    const char *p = (const char *)row;
    for (int64_t x = 0; x < n * (int64_t)sizeof(S); x += 64) __builtin_prefetch(p + x);
}

/* exp(x) for x <= 0 (softmax arguments). In float, plain arithmetic so that loops over it
 * vectorise: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by its degree-6 Taylor polynomial
 * (relative error below 1.3e-7, float's rounding), 2^n by the exponent bits; 0 below the
 * smallest normal float, NaN stays NaN. In double (gradient checks), libm's exp. */
INLINE T vexp(T x) {
    if (sizeof(T) != sizeof(float)) return EXP(x);
    const int under = x < (T)-87.3;
    x = under ? (T)-87.3 : x;
    const T n = __builtin_rintf((float)(x * (T)1.4426950408889634));
    const T r = (x - n * (T)0.693145751953125) - n * (T)1.428606820309417e-06;
    T p = (T)(1.0 / 720);
    p = p * r + (T)(1.0 / 120);
    p = p * r + (T)(1.0 / 24);
    p = p * r + (T)(1.0 / 6);
    p = p * r + (T)0.5;
    p = p * r + (T)1;
    p = p * r + (T)1;
    union { float f; int32_t i; } u = {.i = ((int32_t)n + 127) << 23};
    return under ? (T)0 : p * (T)u.f;
}

/* Each entry point runs its row body over all rows, with C a constant where it is a common
 * size (one specialised copy each), and as a variable otherwise. */
#define FOR_ROWS(n_rows, BODY)                                                               \
    do {                                                                                     \
        _Pragma("omp parallel for schedule(dynamic, 16) num_threads(nthreads)")              \
        for (int64_t r = 0; r < (n_rows); r++) BODY;                                         \
    } while (0)
#ifdef SPECIALISE /* float: C = 8, 16, 32, 64 as constants, other C as a variable */
#define DISPATCH_C(C, A, n_rows, BODY_OF)                                                    \
    switch (C) {                                                                             \
    case 8: FOR_ROWS(n_rows, BODY_OF(8, A)); break;                                          \
    case 16: FOR_ROWS(n_rows, BODY_OF(16, A)); break;                                        \
    case 32: FOR_ROWS(n_rows, BODY_OF(32, A)); break;                                        \
    case 64: FOR_ROWS(n_rows, BODY_OF(64, A)); break;                                        \
    default: FOR_ROWS(n_rows, BODY_OF(C, A)); break;                                         \
    }
#else /* double (gradient checks): one copy */
#define DISPATCH_C(C, A, n_rows, BODY_OF) { FOR_ROWS(n_rows, BODY_OF(C, A)); }
#endif
#define DISPATCH(C, additive, n_rows, BODY_OF)                                               \
    do {                                                                                     \
        if (additive) DISPATCH_C(C, 1, n_rows, BODY_OF)                                      \
        else DISPATCH_C(C, 0, n_rows, BODY_OF)                                               \
    } while (0)

