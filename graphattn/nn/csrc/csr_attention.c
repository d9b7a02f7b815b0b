/* Fused CSR graph attention on the CPU: score -> segment softmax -> weighted sum in one pass
 * over the in-edges of each target, and a backward in two passes (one per target, one per
 * source over the transposed structure), so every output row is written by one thread and
 * no atomics are needed. Only [E, H] scalars are stored (alpha, score gradients): never an
 * [E, H, C] tensor.
 *
 * Layouts (all contiguous, row-major): q [N_t, H, C], k and v [N_s, H, C], out [N_t, H, C],
 * att [H, C] (additive score) or NULL (dot score), bias, noise, alpha, gs [E, H] with the
 * edges sorted by target: crow [N_t + 1] and col [E] (source of each edge). The transpose:
 * crow_t [N_s + 1], perm_t [E] (sorted-edge position of each edge in source order) and
 * dst_t [E] (its target).
 *
 * Scores: dot  s = scale * q_i . k_j            (per head)
 *         add. s = sum_c att_c LeakyReLU(q_ic + k_jc)
 * plus bias[e, h] when given. alpha = exp(s - max) / (sum + 1e-16), the same formula as
 * torch_geometric.utils.softmax. out_i = sum_e alpha_e noise_e v_j (noise: dropout keep
 * mask / (1 - p), or NULL).
 *
 * Compiled on first use by graphattn/nn/native.py (cc -O3 -fopenmp); one copy per dtype.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_thread_num(void) { return 0; }
#endif

#define AHEAD 8 /* edges: rows are prefetched this far ahead (the gathers are latency bound) */
#define PREFETCH(ptr, bytes)                                                                  \
    do {                                                                                      \
        const char *p_ = (const char *)(ptr);                                                 \
        for (int64_t x_ = 0; x_ < (int64_t)(bytes); x_ += 64) __builtin_prefetch(p_ + x_);    \
    } while (0)

#define LEAKY(z, slope) (((z) > 0 ? (z) : 0) + (slope) * ((z) < 0 ? (z) : 0))
#define LEAKY_GRAD(z, slope) ((slope) + (1 - (slope)) * ((z) > 0))

#define DEFINE_KERNELS(T, SUF, EXP)                                                          \
/* row + the edge embedding of edge e when there is one (into buf), else row itself */       \
static inline const T *with_emb_##SUF(const T *row, const T *emb, int64_t e, int64_t HC,     \
                                      T *buf) {                                              \
    if (!emb) return row;                                                                    \
    for (int64_t x = 0; x < HC; x++) buf[x] = row[x] + emb[e * HC + x];                      \
    return buf;                                                                              \
}                                                                                            \
                                                                                             \
void csr_attention_forward_##SUF(                                                            \
    int64_t n_t, int64_t H, int64_t C, const int64_t *crow, const int64_t *col,              \
    const T *q, const T *k, const T *v, const T *emb, const T *att, const T *bias,           \
    const T *noise, double scale, double slope, T *out, T *alpha, int nthreads) {            \
    const int64_t HC = H * C, n_e = crow[n_t];                                               \
    _Pragma("omp parallel for schedule(dynamic, 16) num_threads(nthreads)")                  \
    for (int64_t i = 0; i < n_t; i++) {                                                      \
        const int64_t a = crow[i], b = crow[i + 1];                                          \
        T *o = out + i * HC;                                                                 \
        memset(o, 0, sizeof(T) * HC);                                                        \
        if (a == b) continue;                                                                \
        const T *qi = q + i * HC;                                                            \
        T mx[H], sm[H], kbuf[HC], vbuf[HC];                                                  \
        for (int64_t h = 0; h < H; h++) { mx[h] = -INFINITY; sm[h] = 0; }                    \
        for (int64_t e = a; e < b; e++) {                                                    \
            if (e + AHEAD < n_e) PREFETCH(k + col[e + AHEAD] * HC, sizeof(T) * HC);          \
            const T *kj = with_emb_##SUF(k + col[e] * HC, emb, e, HC, kbuf);                 \
            for (int64_t h = 0; h < H; h++) {                                                \
                const T *qh = qi + h * C, *kh = kj + h * C;                                  \
                T s = 0;                                                                     \
                if (att) {                                                                   \
                    const T *ah = att + h * C;                                               \
                    _Pragma("omp simd reduction(+:s)")                                       \
                    for (int64_t c = 0; c < C; c++) {                                        \
                        T z = qh[c] + kh[c];                                                 \
                        s += ah[c] * LEAKY(z, (T)slope);                                     \
                    }                                                                        \
                } else {                                                                     \
                    _Pragma("omp simd reduction(+:s)")                                       \
                    for (int64_t c = 0; c < C; c++) s += qh[c] * kh[c];                      \
                    s *= (T)scale;                                                           \
                }                                                                            \
                if (bias) s += bias[e * H + h];                                              \
                alpha[e * H + h] = s;                                                        \
                if (s > mx[h]) mx[h] = s;                                                    \
            }                                                                                \
        }                                                                                    \
        for (int64_t e = a; e < b; e++)                                                      \
            for (int64_t h = 0; h < H; h++) {                                                \
                T p = EXP(alpha[e * H + h] - mx[h]);                                         \
                alpha[e * H + h] = p;                                                        \
                sm[h] += p;                                                                  \
            }                                                                                \
        for (int64_t h = 0; h < H; h++) sm[h] = 1 / (sm[h] + (T)1e-16);                      \
        for (int64_t e = a; e < b; e++) {                                                    \
            if (e + AHEAD < n_e) PREFETCH(v + col[e + AHEAD] * HC, sizeof(T) * HC);          \
            const T *vj = with_emb_##SUF(v + col[e] * HC, emb, e, HC, vbuf);                 \
            for (int64_t h = 0; h < H; h++) {                                                \
                T p = alpha[e * H + h] * sm[h];                                              \
                alpha[e * H + h] = p;                                                        \
                if (noise) p *= noise[e * H + h];                                            \
                T *oh = o + h * C;                                                           \
                const T *vh = vj + h * C;                                                    \
                for (int64_t c = 0; c < C; c++) oh[c] += p * vh[c];                          \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* Pass 1, per target: score gradients gs [E, H], gq, and (additive) per-thread partial      \
 * sums of the gradient of att, gatt [nthreads, H, C] (zeroed by the caller). */             \
void csr_attention_backward_dst_##SUF(                                                       \
    int64_t n_t, int64_t H, int64_t C, const int64_t *crow, const int64_t *col,              \
    const T *q, const T *k, const T *v, const T *emb, const T *att, const T *noise,          \
    const T *alpha, const T *out, const T *gout, double scale, double slope, T *gs,          \
    T *gq, T *gemb, T *gatt, int nthreads) {                                                 \
    const int64_t HC = H * C, n_e = crow[n_t];                                               \
    _Pragma("omp parallel for schedule(dynamic, 16) num_threads(nthreads)")                  \
    for (int64_t i = 0; i < n_t; i++) {                                                      \
        const int64_t a = crow[i], b = crow[i + 1];                                          \
        T *gqi = gq + i * HC;                                                                \
        memset(gqi, 0, sizeof(T) * HC);                                                      \
        if (a == b) continue;                                                                \
        const T *qi = q + i * HC, *goi = gout + i * HC, *oi = out + i * HC;                  \
        T *ga = att ? gatt + (int64_t)omp_get_thread_num() * HC : NULL;                      \
        T dot[H], kbuf[HC], vbuf[HC];                                                        \
        for (int64_t h = 0; h < H; h++) {                                                    \
            T d = 0;                                                                         \
            _Pragma("omp simd reduction(+:d)")                                               \
            for (int64_t c = 0; c < C; c++) d += goi[h * C + c] * oi[h * C + c];             \
            dot[h] = d;                                                                      \
        }                                                                                    \
        for (int64_t e = a; e < b; e++) {                                                    \
            if (e + AHEAD < n_e) {                                                           \
                PREFETCH(k + col[e + AHEAD] * HC, sizeof(T) * HC);                           \
                PREFETCH(v + col[e + AHEAD] * HC, sizeof(T) * HC);                           \
            }                                                                                \
            const T *kj = with_emb_##SUF(k + col[e] * HC, emb, e, HC, kbuf);                 \
            const T *vj = with_emb_##SUF(v + col[e] * HC, emb, e, HC, vbuf);                 \
            for (int64_t h = 0; h < H; h++) {                                                \
                const T *go = goi + h * C, *vh = vj + h * C, *kh = kj + h * C;               \
                T gw = 0;                                                                    \
                _Pragma("omp simd reduction(+:gw)")                                          \
                for (int64_t c = 0; c < C; c++) gw += go[c] * vh[c];                         \
                if (noise) gw *= noise[e * H + h];                                           \
                const T g = alpha[e * H + h] * (gw - dot[h]);                                \
                gs[e * H + h] = g;                                                           \
                T *gqh = gqi + h * C;                                                        \
                /* the edge embedding's gradient: as a key (the score) + as a value */       \
                T *geh = gemb ? gemb + e * HC + h * C : NULL;                                \
                T w = alpha[e * H + h];                                                      \
                if (noise) w *= noise[e * H + h];                                            \
                if (geh) for (int64_t c = 0; c < C; c++) geh[c] = w * go[c];                 \
                if (att) {                                                                   \
                    const T *ah = att + h * C, *qh = qi + h * C;                             \
                    T *gah = ga + h * C;                                                     \
                    for (int64_t c = 0; c < C; c++) {                                        \
                        T z = qh[c] + kh[c];                                                 \
                        const T gz = g * ah[c] * LEAKY_GRAD(z, (T)slope);                    \
                        gqh[c] += gz;                                                        \
                        if (geh) geh[c] += gz;                                               \
                        gah[c] += g * LEAKY(z, (T)slope);                                    \
                    }                                                                        \
                } else {                                                                     \
                    const T gsc = g * (T)scale;                                              \
                    for (int64_t c = 0; c < C; c++) gqh[c] += gsc * kh[c];                   \
                    if (geh)                                                                 \
                        for (int64_t c = 0; c < C; c++) geh[c] += gsc * qi[h * C + c];       \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* Pass 2, per source (transposed structure): gk and gv. */                                  \
void csr_attention_backward_src_##SUF(                                                       \
    int64_t n_s, int64_t H, int64_t C, const int64_t *crow_t, const int64_t *perm_t,         \
    const int64_t *dst_t, const T *q, const T *k, const T *emb, const T *att,                \
    const T *noise, const T *alpha, const T *gs, const T *gout, double scale, double slope,  \
    T *gk, T *gv, int nthreads) {                                                            \
    const int64_t HC = H * C, n_e = crow_t[n_s];                                             \
    _Pragma("omp parallel for schedule(dynamic, 16) num_threads(nthreads)")                  \
    for (int64_t j = 0; j < n_s; j++) {                                                      \
        T *gkj = gk + j * HC, *gvj = gv + j * HC;                                            \
        memset(gkj, 0, sizeof(T) * HC);                                                      \
        memset(gvj, 0, sizeof(T) * HC);                                                      \
        const T *kj = k + j * HC;                                                            \
        for (int64_t p = crow_t[j]; p < crow_t[j + 1]; p++) {                                \
            if (p + AHEAD < n_e) {                                                           \
                const int64_t ea = perm_t[p + AHEAD], ia = dst_t[p + AHEAD];                 \
                PREFETCH(q + ia * HC, sizeof(T) * HC);                                       \
                PREFETCH(gout + ia * HC, sizeof(T) * HC);                                    \
                __builtin_prefetch(alpha + ea * H);                                          \
                __builtin_prefetch(gs + ea * H);                                             \
                if (noise) __builtin_prefetch(noise + ea * H);                               \
            }                                                                                \
            const int64_t e = perm_t[p], i = dst_t[p];                                       \
            const T *qi = q + i * HC, *goi = gout + i * HC;                                  \
            for (int64_t h = 0; h < H; h++) {                                                \
                T w = alpha[e * H + h];                                                      \
                if (noise) w *= noise[e * H + h];                                            \
                const T g = gs[e * H + h];                                                   \
                const T *go = goi + h * C, *qh = qi + h * C;                                 \
                T *gvh = gvj + h * C, *gkh = gkj + h * C;                                    \
                for (int64_t c = 0; c < C; c++) gvh[c] += w * go[c];                         \
                if (att) {                                                                   \
                    const T *ah = att + h * C, *kh = kj + h * C;                             \
                    for (int64_t c = 0; c < C; c++) {                                        \
                        T z = qh[c] + kh[c] + (emb ? emb[e * HC + h * C + c] : 0);           \
                        gkh[c] += g * ah[c] * LEAKY_GRAD(z, (T)slope);                       \
                    }                                                                        \
                } else {                                                                     \
                    const T gsc = g * (T)scale;                                              \
                    for (int64_t c = 0; c < C; c++) gkh[c] += gsc * qh[c];                   \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
}

DEFINE_KERNELS(float, f32, expf)
DEFINE_KERNELS(double, f64, exp)
