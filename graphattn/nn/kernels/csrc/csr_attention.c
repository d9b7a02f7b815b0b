/* Fused CSR graph attention on the CPU (mask="adjacency"): score -> segment softmax ->
 * weighted sum in one sweep over the in-edges of each target, and a backward in two passes
 * (one per target, one per source over the transposed structure), so every output row is
 * written by one thread and no atomics are needed. Only [E, H] scalars are stored (alpha, score gradients):
 * never an [E, H, C] tensor.
 *
 * Layouts (all contiguous, row-major): q [N_t, H, C], kv [N_s, 2, H, C] (the key and the
 * value of a node side by side: an edge gathers one 2HC row, not two rows far apart) or,
 * with shared rows (SH = 1), kv [N_s, C]: one row that is the key and the value of every
 * head (attention over raw features projected after the sum, see GraphSelfAttention; an
 * edge then gathers C elements, and a row's gradient is summed over heads, keys and values),
 * out [N_t, H, C], att [H, C] (additive score) or NULL (dot score), bias, noise, alpha [E, H]
 * with the edges sorted by target: crow [N_t + 1] and col [E] (source of each edge). The
 * transpose: crow_t [N_s + 1], perm_t [E] (sorted-edge position of each edge in source
 * order) and dst_t [E] (its target). emb [E, H, C] (edge embedding added to keys and values)
 * or NULL. The backward's per-edge scalars wg [E, 2, H]: the weight alpha * noise, then the
 * score gradient, of each head, so the source pass reads one line per edge. live [N_t]: the
 * targets whose output gradient is not all zero; the source pass skips the others' edges.
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

/* kv's layout: RS elements per node, a key (or value) row of KL elements, head h's key at
 * h * HS in it and the value VO after the key; separate rows, or one shared row (SH) */
#define KV_LAYOUT(SH, H, C)                                                                  \
    const int64_t RS = (SH) ? (C) : 2 * (H) * (C), KL = (SH) ? (C) : (H) * (C);              \
    const int64_t HS = (SH) ? 0 : (C), VO = (SH) ? 0 : (H) * (C)

INLINE void forward_row(int64_t i, int64_t H, const int64_t C, const int ADD, const int SH,
                        const int64_t *crow, const int64_t *col, const S *q, const S *kv,
                        const S *emb, const T *att, const T *bias, const T *noise, T scale,
                        T slope, S *out, T *alpha, int64_t n_e) {
    const int64_t HC = H * C, a = crow[i], b = crow[i + 1];
    KV_LAYOUT(SH, H, C);
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
        if (e + AHEAD < n_e) prefetch_row(kv + col[e + AHEAD] * RS, RS);
        const T *kj = row_of(kv + col[e] * RS, emb, e, KL, buf);
        for (int64_t h = 0; h < H; h++) {
            T s = score(qi + h * C, kj + h * HS, ADD ? att + h * C : NULL, scale, slope, C);
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
        if (hub && e + AHEAD < b) prefetch_row(kv + col[e + AHEAD] * RS + VO, KL);
        const T *vj = row_of(kv + col[e] * RS + VO, emb, e, KL, buf);
        for (int64_t h = 0; h < H; h++) {
            T p = alpha[e * H + h] * sm[h];
            alpha[e * H + h] = p;
            if (noise) p *= noise[e * H + h];
            T *oh = o + h * C;
            const T *vh = vj + h * HS;
            VEC for (int64_t c = 0; c < C; c++) oh[c] += p * vh[c];
        }
    }
    store_row(out + i * HC, o, HC);
}

/* Pass 1 of the backward, per target: the per-edge weights and score gradients wg, gq, the
 * edge embedding's gradient, and (additive) this thread's partial sum of att's gradient. */
INLINE void backward_dst_row(int64_t i, int64_t H, const int64_t C, const int ADD,
                             const int SH, const int64_t *crow, const int64_t *col,
                             const S *q, const S *kv, const S *emb, const T *att,
                             const T *noise, const T *alpha, const S *out, const S *gout,
                             T scale, T slope, T *wg, S *gq, S *gemb, T *ga, uint8_t *live,
                             int64_t n_e) {
    const int64_t HC = H * C, a = crow[i], b = crow[i + 1];
    KV_LAYOUT(SH, H, C);
    T gqi[HC], gobuf[HC];
    memset(gqi, 0, sizeof(T) * HC);
    const T *goi = row_of(gout + i * HC, NULL, 0, HC, gobuf);
    int nz = 0;
    for (int64_t x = 0; x < HC; x++) nz |= goi[x] != 0; /* NaN counts as non-zero */
    live[i] = (uint8_t)nz;
    if (a == b || !nz) { /* a zero output gradient (e.g. an unlabelled node after the last
                          * layer) gives every in-edge zero gradients: no row is gathered */
        VEC for (int64_t x = 2 * a * H; x < 2 * b * H; x++) wg[x] = 0;
        if (emb && gemb) memset(gemb + a * HC, 0, sizeof(S) * HC * (b - a));
        store_row(gq + i * HC, gqi, HC);
        return;
    }
    T qbuf[HC], obuf[HC], kbuf[HC], vbuf[HC], ge[HC], dot[H];
    const T *qi = row_of(q + i * HC, NULL, 0, HC, qbuf);
    const T *oi = row_of(out + i * HC, NULL, 0, HC, obuf);
    for (int64_t h = 0; h < H; h++) {
        T d = 0;
        _Pragma("omp simd reduction(+:d)")
        for (int64_t c = 0; c < C; c++) d += goi[h * C + c] * oi[h * C + c];
        dot[h] = d;
    }
    for (int64_t e = a; e < b; e++) {
        if (e + AHEAD < n_e) prefetch_row(kv + col[e + AHEAD] * RS, RS);
        const T *kj = row_of(kv + col[e] * RS, emb, e, KL, kbuf);
        const T *vj = row_of(kv + col[e] * RS + VO, emb, e, KL, vbuf);
        for (int64_t h = 0; h < H; h++) {
            const T *go = goi + h * C, *vh = vj + h * HS, *kh = kj + h * HS, *qh = qi + h * C;
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
                             const int SH, const int64_t *crow_t, const int64_t *perm_t,
                             const int64_t *dst_t, const S *q, const S *kv, const S *emb,
                             const T *att, const T *wg, const S *gout, T scale, T slope,
                             S *gkv, const uint8_t *live, int64_t n_e) {
    const int64_t HC = H * C;
    KV_LAYOUT(SH, H, C);
    T g2[2 * HC], kbuf[HC], qbuf[HC], gobuf[HC], ebuf[HC];
    T *gkj = g2, *gvj = g2 + VO; /* shared rows: one sum over heads, keys and values */
    memset(g2, 0, sizeof(T) * 2 * HC);
    const T *kj = ADD ? row_of(kv + j * RS, NULL, 0, KL, kbuf) : NULL;
    for (int64_t p = crow_t[j]; p < crow_t[j + 1]; p++) {
        if (p + AHEAD < n_e && live[dst_t[p + AHEAD]]) {
            const int64_t ia = dst_t[p + AHEAD];
            prefetch_row(q + ia * HC, HC);
            prefetch_row(gout + ia * HC, HC);
            __builtin_prefetch(wg + perm_t[p + AHEAD] * 2 * H);
        }
        const int64_t e = perm_t[p], i = dst_t[p];
        if (!live[i]) continue; /* its target passes no gradient back */
        const T *qi = row_of(q + i * HC, NULL, 0, HC, qbuf);
        const T *goi = row_of(gout + i * HC, NULL, 0, HC, gobuf);
        const T *ei = ADD && emb ? row_of(emb + e * HC, NULL, 0, HC, ebuf) : NULL;
        for (int64_t h = 0; h < H; h++) {
            const T w = wg[(2 * e) * H + h], g = wg[(2 * e + 1) * H + h];
            const T *go = goi + h * C, *qh = qi + h * C;
            T *gvh = gvj + h * HS, *gkh = gkj + h * HS;
            VEC for (int64_t c = 0; c < C; c++) gvh[c] += w * go[c];
            if (ADD) {
                const T *ah = att + h * C, *kh = kj + h * HS;
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
    store_row(gkv + j * RS, g2, RS);
}

void NAME(csr_attention_forward)(
    int64_t n_t, int64_t H, int64_t C, int64_t shared, const int64_t *crow, const int64_t *col,
    const S *q, const S *kv, const S *emb, const T *att, const T *bias, const T *noise,
    double scale, double slope, S *out, T *alpha, int nthreads) {
    const int64_t n_e = crow[n_t];
    const int SH = shared != 0;
#define BODY(CC, A) forward_row(r, H, CC, A, SH, crow, col, q, kv, emb, att, bias, noise,     \
                                (T)scale, (T)slope, out, alpha, n_e)
    DISPATCH(C, att != NULL, n_t, BODY);
#undef BODY
}

void NAME(csr_attention_backward_dst)(
    int64_t n_t, int64_t H, int64_t C, int64_t shared, const int64_t *crow, const int64_t *col,
    const S *q, const S *kv, const S *emb, const T *att, const T *noise, const T *alpha,
    const S *out, const S *gout, double scale, double slope, T *wg, S *gq, S *gemb, T *gatt,
    uint8_t *live, int nthreads) {
    const int64_t n_e = crow[n_t];
    const int SH = shared != 0;
#define BODY(CC, A) backward_dst_row(r, H, CC, A, SH, crow, col, q, kv, emb, att, noise,     \
                                     alpha, out, gout, (T)scale, (T)slope, wg, gq, gemb,     \
                                     A ? gatt + (int64_t)omp_get_thread_num() * H * CC : NULL, \
                                     live, n_e)
    DISPATCH(C, att != NULL, n_t, BODY);
#undef BODY
}

void NAME(csr_attention_backward_src)(
    int64_t n_s, int64_t H, int64_t C, int64_t shared, const int64_t *crow_t,
    const int64_t *perm_t, const int64_t *dst_t, const S *q, const S *kv, const S *emb,
    const T *att, const T *wg, const S *gout, double scale, double slope, S *gkv,
    const uint8_t *live, int nthreads) {
    const int64_t n_e = crow_t[n_s];
    const int SH = shared != 0;
#define BODY(CC, A) backward_src_row(r, H, CC, A, SH, crow_t, perm_t, dst_t, q, kv, emb, att, \
                                     wg, gout, (T)scale, (T)slope, gkv, live, n_e)
    DISPATCH(C, att != NULL, n_s, BODY);
#undef BODY
}
