/* Fused CSR graph attention on the CPU (mask="adjacency"): score -> segment softmax ->
 * weighted sum in one sweep over the in-edges of each target, and a backward in two passes
 * (one per target, one per source over the transposed structure), so every output row is
 * written by one thread and no atomics are needed. Only [E, H] scalars are stored (alpha, score gradients):
 * never an [E, H, C] tensor.
 *
 * Layouts (all contiguous, row-major): q [N_t, H, C], kv [N_s, 2, H, C] (the key and the
 * value of a node side by side: an edge gathers one 2HC row, not two rows far apart),
 * out [N_t, H, C], att [H, C] (additive score) or NULL (dot score), bias, noise, alpha [E, H]
 * with the edges sorted by target: crow [N_t + 1] and col [E] (source of each edge). The
 * transpose: crow_t [N_s + 1], perm_t [E] (sorted-edge position of each edge in source
 * order) and dst_t [E] (its target). emb [E, H, C] (edge embedding added to keys and values)
 * or NULL. The backward's per-edge scalars wg [E, 2, H]: the weight alpha * noise, then the
 * score gradient, of each head, so the source pass reads one line per edge.
 *
 * Scores: dot  s = scale * q_i . k_j            (per head)
 *         add. s = sum_c att_c LeakyReLU(q_ic + k_jc)
 * plus bias[e, h] when given. alpha = exp(s - max) / (sum + 1e-16), the same formula as
 * torch_geometric.utils.softmax. out_i = sum_e alpha_e noise_e v_j (noise: dropout keep
 * mask / (1 - p), or NULL).
 *
 * Precision: node rows (q, kv, out and their gradients) and emb are of type S, float32 /
 * float64 or bfloat16 (common.h); every score, weight, sum and per-edge scalar (att, bias,
 * noise, alpha, wg) is of type T. Rows are read into T (converted once per use in bfloat16)
 * and each output row is summed in T, then stored.
 *
 * The per-row bodies take C, the channels per head, as an argument and are always inlined:
 * the entry points call them with C = 8, 16, 32 or 64 as a constant (the compiler unrolls
 * and vectorises the channel loops) or with any other C (common.h).
 */
#include "common.h"

INLINE T leaky(T z, T slope) { return z > 0 ? z : slope * z; }
INLINE T leaky_grad(T z, T slope) { return z > 0 ? (T)1 : slope; }

/* the C-channel score of one head: scale * q.k, or att . LeakyReLU(q + k) */
INLINE T score(const T *qh, const T *kh, const T *ah, T scale, T slope, const int64_t C) {
    T s = 0;
    if (ah) { /* additive */
        _Pragma("omp simd reduction(+:s)")
        for (int64_t c = 0; c < C; c++) s += ah[c] * leaky(qh[c] + kh[c], slope);
        return s;
    }
    _Pragma("omp simd reduction(+:s)")
    for (int64_t c = 0; c < C; c++) s += qh[c] * kh[c];
    return s * scale;
}

/* a row (plus the edge embedding of edge e when emb is given) in T: the row itself when it
 * is stored in T and there is no embedding, else converted into buf */
INLINE const T *row_of(const S *row, const S *emb, int64_t e, int64_t HC, T *buf) {
#ifndef BF16
    if (!emb) return row;
#endif
    if (emb) {
        VEC for (int64_t x = 0; x < HC; x++) buf[x] = ld(row[x]) + ld(emb[e * HC + x]);
    } else {
        VEC for (int64_t x = 0; x < HC; x++) buf[x] = ld(row[x]);
    }
    return buf;
}

INLINE void store_row(S *dst, const T *src, int64_t n) {
    VEC for (int64_t x = 0; x < n; x++) dst[x] = st(src[x]);
}

INLINE void forward_row(int64_t i, int64_t H, const int64_t C, const int ADD,
                        const int64_t *crow, const int64_t *col, const S *q, const S *kv,
                        const S *emb, const T *att, const T *bias, const T *noise, T scale,
                        T slope, S *out, T *alpha, int64_t n_e) {
    const int64_t HC = H * C, a = crow[i], b = crow[i + 1];
    T o[HC];
    memset(o, 0, sizeof(T) * HC);
    if (a == b) {
        store_row(out + i * HC, o, HC);
        return;
    }
    T qbuf[HC], buf[HC], mx[H], sm[H];
    const T *qi = row_of(q + i * HC, NULL, 0, HC, qbuf);
    for (int64_t h = 0; h < H; h++) { mx[h] = -INFINITY; sm[h] = 0; }
    for (int64_t e = a; e < b; e++) { /* scores and their maximum */
        if (e + AHEAD < n_e) prefetch_row(kv + col[e + AHEAD] * 2 * HC, 2 * HC);
        const T *kj = row_of(kv + col[e] * 2 * HC, emb, e, HC, buf);
        for (int64_t h = 0; h < H; h++) {
            T s = score(qi + h * C, kj + h * C, ADD ? att + h * C : NULL, scale, slope, C);
            if (bias) s += bias[e * H + h];
            alpha[e * H + h] = s;
            mx[h] = s > mx[h] ? s : mx[h];
        }
    }
    for (int64_t e = a; e < b; e++) { /* exp and sum, all heads of an edge at once */
        T *al = alpha + e * H;
        VEC for (int64_t h = 0; h < H; h++) {
            al[h] = vexp(al[h] - mx[h]);
            sm[h] += al[h];
        }
    }
    for (int64_t h = 0; h < H; h++) sm[h] = 1 / (sm[h] + (T)1e-16);
    const int hub = b - a > 256; /* its rows may have left the cache since the first pass */
    for (int64_t e = a; e < b; e++) { /* normalise, weighted sum of the values */
        if (hub && e + AHEAD < b) prefetch_row(kv + col[e + AHEAD] * 2 * HC + HC, HC);
        const T *vj = row_of(kv + col[e] * 2 * HC + HC, emb, e, HC, buf);
        for (int64_t h = 0; h < H; h++) {
            T p = alpha[e * H + h] * sm[h];
            alpha[e * H + h] = p;
            if (noise) p *= noise[e * H + h];
            T *oh = o + h * C;
            const T *vh = vj + h * C;
            VEC for (int64_t c = 0; c < C; c++) oh[c] += p * vh[c];
        }
    }
    store_row(out + i * HC, o, HC);
}

/* Pass 1 of the backward, per target: the per-edge weights and score gradients wg, gq, the
 * edge embedding's gradient, and (additive) this thread's partial sum of att's gradient. */
INLINE void backward_dst_row(int64_t i, int64_t H, const int64_t C, const int ADD,
                             const int64_t *crow, const int64_t *col, const S *q, const S *kv,
                             const S *emb, const T *att, const T *noise, const T *alpha,
                             const S *out, const S *gout, T scale, T slope, T *wg, S *gq,
                             S *gemb, T *ga, int64_t n_e) {
    const int64_t HC = H * C, a = crow[i], b = crow[i + 1];
    T gqi[HC];
    memset(gqi, 0, sizeof(T) * HC);
    if (a == b) {
        store_row(gq + i * HC, gqi, HC);
        return;
    }
    T qbuf[HC], gobuf[HC], obuf[HC], kbuf[HC], vbuf[HC], ge[HC], dot[H];
    const T *qi = row_of(q + i * HC, NULL, 0, HC, qbuf);
    const T *goi = row_of(gout + i * HC, NULL, 0, HC, gobuf);
    const T *oi = row_of(out + i * HC, NULL, 0, HC, obuf);
    for (int64_t h = 0; h < H; h++) {
        T d = 0;
        _Pragma("omp simd reduction(+:d)")
        for (int64_t c = 0; c < C; c++) d += goi[h * C + c] * oi[h * C + c];
        dot[h] = d;
    }
    for (int64_t e = a; e < b; e++) {
        if (e + AHEAD < n_e) prefetch_row(kv + col[e + AHEAD] * 2 * HC, 2 * HC);
        const T *kj = row_of(kv + col[e] * 2 * HC, emb, e, HC, kbuf);
        const T *vj = row_of(kv + col[e] * 2 * HC + HC, emb, e, HC, vbuf);
        for (int64_t h = 0; h < H; h++) {
            const T *go = goi + h * C, *vh = vj + h * C, *kh = kj + h * C, *qh = qi + h * C;
            T gw = 0;
            _Pragma("omp simd reduction(+:gw)")
            for (int64_t c = 0; c < C; c++) gw += go[c] * vh[c];
            const T nz = noise ? noise[e * H + h] : (T)1, w = alpha[e * H + h] * nz;
            const T g = alpha[e * H + h] * (gw * nz - dot[h]);
            wg[(2 * e) * H + h] = w;
            wg[(2 * e + 1) * H + h] = g;
            T *gqh = gqi + h * C;
            /* the edge embedding's gradient: as a value, then as a key (below) */
            T *geh = emb && gemb ? ge + h * C : NULL;
            if (geh) {
                VEC for (int64_t c = 0; c < C; c++) geh[c] = w * go[c];
            }
            if (ADD) {
                const T *ah = att + h * C;
                T *gah = ga + h * C;
                VEC for (int64_t c = 0; c < C; c++) {
                    const T z = qh[c] + kh[c];
                    const T gz = g * ah[c] * leaky_grad(z, slope);
                    gqh[c] += gz;
                    if (geh) geh[c] += gz;
                    gah[c] += g * leaky(z, slope);
                }
            } else {
                const T gsc = g * scale;
                VEC for (int64_t c = 0; c < C; c++) gqh[c] += gsc * kh[c];
                if (geh) {
                    VEC for (int64_t c = 0; c < C; c++) geh[c] += gsc * qh[c];
                }
            }
        }
        if (emb && gemb) store_row(gemb + e * HC, ge, HC);
    }
    store_row(gq + i * HC, gqi, HC);
}

/* Pass 2 of the backward, per source (transposed structure): its row of gkv. */
INLINE void backward_src_row(int64_t j, int64_t H, const int64_t C, const int ADD,
                             const int64_t *crow_t, const int64_t *perm_t, const int64_t *dst_t,
                             const S *q, const S *kv, const S *emb, const T *att, const T *wg,
                             const S *gout, T scale, T slope, S *gkv, int64_t n_e) {
    const int64_t HC = H * C;
    T g2[2 * HC], kbuf[HC], qbuf[HC], gobuf[HC], ebuf[HC];
    T *gkj = g2, *gvj = g2 + HC;
    memset(g2, 0, sizeof(T) * 2 * HC);
    const T *kj = ADD ? row_of(kv + j * 2 * HC, NULL, 0, HC, kbuf) : NULL;
    for (int64_t p = crow_t[j]; p < crow_t[j + 1]; p++) {
        if (p + AHEAD < n_e) {
            const int64_t ia = dst_t[p + AHEAD];
            prefetch_row(q + ia * HC, HC);
            prefetch_row(gout + ia * HC, HC);
            __builtin_prefetch(wg + perm_t[p + AHEAD] * 2 * H);
        }
        const int64_t e = perm_t[p], i = dst_t[p];
        const T *qi = row_of(q + i * HC, NULL, 0, HC, qbuf);
        const T *goi = row_of(gout + i * HC, NULL, 0, HC, gobuf);
        const T *ei = ADD && emb ? row_of(emb + e * HC, NULL, 0, HC, ebuf) : NULL;
        for (int64_t h = 0; h < H; h++) {
            const T w = wg[(2 * e) * H + h], g = wg[(2 * e + 1) * H + h];
            const T *go = goi + h * C, *qh = qi + h * C;
            T *gvh = gvj + h * C, *gkh = gkj + h * C;
            VEC for (int64_t c = 0; c < C; c++) gvh[c] += w * go[c];
            if (ADD) {
                const T *ah = att + h * C, *kh = kj + h * C;
                const T *eh = ei ? ei + h * C : NULL;
                VEC for (int64_t c = 0; c < C; c++) {
                    const T z = qh[c] + kh[c] + (eh ? eh[c] : 0);
                    gkh[c] += g * ah[c] * leaky_grad(z, slope);
                }
            } else {
                const T gsc = g * scale;
                VEC for (int64_t c = 0; c < C; c++) gkh[c] += gsc * qh[c];
            }
        }
    }
    store_row(gkv + j * 2 * HC, g2, 2 * HC);
}

void NAME(csr_attention_forward)(
    int64_t n_t, int64_t H, int64_t C, const int64_t *crow, const int64_t *col, const S *q,
    const S *kv, const S *emb, const T *att, const T *bias, const T *noise, double scale,
    double slope, S *out, T *alpha, int nthreads) {
    const int64_t n_e = crow[n_t];
#define BODY(CC, A) forward_row(r, H, CC, A, crow, col, q, kv, emb, att, bias, noise,         \
                                (T)scale, (T)slope, out, alpha, n_e)
    DISPATCH(C, att != NULL, n_t, BODY);
#undef BODY
}

void NAME(csr_attention_backward_dst)(
    int64_t n_t, int64_t H, int64_t C, const int64_t *crow, const int64_t *col, const S *q,
    const S *kv, const S *emb, const T *att, const T *noise, const T *alpha, const S *out,
    const S *gout, double scale, double slope, T *wg, S *gq, S *gemb, T *gatt, int nthreads) {
    const int64_t n_e = crow[n_t];
#define BODY(CC, A) backward_dst_row(r, H, CC, A, crow, col, q, kv, emb, att, noise, alpha,   \
                                     out, gout, (T)scale, (T)slope, wg, gq, gemb,             \
                                     A ? gatt + (int64_t)omp_get_thread_num() * H * CC : NULL, \
                                     n_e)
    DISPATCH(C, att != NULL, n_t, BODY);
#undef BODY
}

void NAME(csr_attention_backward_src)(
    int64_t n_s, int64_t H, int64_t C, const int64_t *crow_t, const int64_t *perm_t,
    const int64_t *dst_t, const S *q, const S *kv, const S *emb, const T *att, const T *wg,
    const S *gout, double scale, double slope, S *gkv, int nthreads) {
    const int64_t n_e = crow_t[n_s];
#define BODY(CC, A) backward_src_row(r, H, CC, A, crow_t, perm_t, dst_t, q, kv, emb, att, wg, \
                                     gout, (T)scale, (T)slope, gkv, n_e)
    DISPATCH(C, att != NULL, n_s, BODY);
#undef BODY
}
