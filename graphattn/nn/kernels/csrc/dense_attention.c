/* Full (within-graph) dot-product attention of a batch of small graphs on the CPU
 * (mask="full"): one thread takes one graph at a time and keeps its keys, values and
 * gradients in cache; nothing is padded and no [n, n] score matrix leaves the thread.
 *
 * Layouts: q [N, H, C], kv [N, 2, H, C] (keys, then values, of a node), out [N, H, C], with
 * the nodes of graph b at rows ptr[b] .. ptr[b + 1] (a PyG batch). Pairs (target i, source j)
 * of graph b are numbered pair_ptr[b] + i * n_b + j (local i, j), the order of
 * graphattn.nn.functional.full_pair_index; noise and alpha are [P, H] in that order.
 * Optional score biases, added before the softmax:
 *   - edge bias: eb [E, H], the edges sorted by target: crow [N + 1], col [E] (global source);
 *     parallel edges add up;
 *   - dense bias: ab at ab[b * sb + h * sh + i * si + j * sj] (sh = 0: shared by the heads);
 *     its gradient gab (zeroed by the caller) has the same strides.
 * The forward keeps stats [N, H, 2]: the row maximum and 1 / sum of each target and head, so
 * the backward recomputes alpha = exp(s - max) / sum (torch_geometric.utils.softmax's
 * formula) from the scores instead of storing them.
 *
 * Per graph and head, keys and values are transposed into [C, n] scratch rows so the score
 * row s[j] = scale q_i . k_j and the backward's g_out_i . v_j vectorise over the sources j.
 */
#include <stdlib.h>

#include "common.h"

#define W 16 /* sources per vector block: rows over the sources are padded to a multiple */
#define TI 4 /* targets per tile */
#define PAD(n) (((n) + W - 1) / W * W)
/* for (j = 0; j < m; j++) over blocks of W: the inner loop has a constant trip count, so it
 * vectorises without a scalar remainder; m is a multiple of W */
#define FOR_J(m, STMT)                                                                        \
    for (int64_t j0 = 0; j0 < (m); j0 += W) {                                                 \
        VEC for (int64_t jj = 0; jj < W; jj++) {                                              \
            const int64_t j = j0 + jj;                                                        \
            STMT;                                                                             \
        }                                                                                     \
    }

/* the sum and the maximum of s[0..m), m a multiple of W (the compiler's vector reductions) */
INLINE T row_sum(const T *s, int64_t m) {
    T total = 0;
    _Pragma("omp simd reduction(+:total)")
    for (int64_t j = 0; j < m; j++) total += s[j];
    return total;
}
INLINE T row_max(const T *s, int64_t m) {
    T top = -INFINITY;
    _Pragma("omp simd reduction(max:top)")
    for (int64_t j = 0; j < m; j++) top = s[j] > top ? s[j] : top;
    return top;
}

typedef struct {
    const int64_t *ptr, *pair_ptr, *crow, *col;
    const T *q, *kv, *eb, *ab, *noise;
    int64_t sb, sh, si, sj; /* strides of ab (and of its gradient gab) */
} graphs_t;

/* tile[t][0..m) = scale * sum_c rows[t][c] * XT[c][0..m) for the TI rows of a tile of
 * targets: each [C, W] block of XT is read once for TI targets, and the TI x W sums stay in
 * registers across the channels */
INLINE void tile_product(const T *const *rows, const T *XT, int64_t m, const int64_t C,
                         T scale, T *tile) {
    for (int64_t j0 = 0; j0 < m; j0 += W) {
        T acc[TI][W];
        for (int64_t t = 0; t < TI; t++) VEC for (int64_t jj = 0; jj < W; jj++) acc[t][jj] = 0;
        for (int64_t c = 0; c < C; c++) {
            const T *xc = XT + c * m + j0;
            T r[TI];
            for (int64_t t = 0; t < TI; t++) r[t] = rows[t][c] * scale;
            VEC for (int64_t jj = 0; jj < W; jj++) {
                const T x = xc[jj];
                for (int64_t t = 0; t < TI; t++) acc[t][jj] += r[t] * x;
            }
        }
        for (int64_t t = 0; t < TI; t++)
            VEC for (int64_t jj = 0; jj < W; jj++) tile[t * m + j0 + jj] = acc[t][jj];
    }
}

/* add the edge and dense biases of local target i (head h) to its score row s */
INLINE void add_biases(const graphs_t *g, int64_t b, int64_t h, int64_t i, int64_t n,
                       int64_t H, T *s) {
    const int64_t base = g->ptr[b];
    if (g->crow)
        for (int64_t e = g->crow[base + i]; e < g->crow[base + i + 1]; e++)
            s[g->col[e] - base] += g->eb[e * H + h];
    if (g->ab) {
        const T *ar = g->ab + b * g->sb + h * g->sh + i * g->si;
        for (int64_t j = 0; j < n; j++) s[j] += ar[j * g->sj];
    }
}

/* out[t][c] = scale[t] sum_{j < n} P[t][j] rows_j[c] (rows_j = base_row + j * stride), TI
 * targets at once: each source row is read once per tile, the TI x C sums stay in registers */
INLINE void tile_sum(const T *P, int64_t m, int64_t n, const T *base_row, int64_t stride,
                     const int64_t C, const T *scale, T *const *out) {
    T acc[TI][C];
    for (int64_t t = 0; t < TI; t++) VEC for (int64_t c = 0; c < C; c++) acc[t][c] = 0;
    for (int64_t j = 0; j < n; j++) {
        const T *xj = base_row + j * stride;
        T p[TI];
        for (int64_t t = 0; t < TI; t++) p[t] = P[t * m + j] * scale[t];
        VEC for (int64_t c = 0; c < C; c++) {
            const T x = xj[c];
            for (int64_t t = 0; t < TI; t++) acc[t][c] += p[t] * x;
        }
    }
    for (int64_t t = 0; t < TI; t++)
        if (out[t]) VEC for (int64_t c = 0; c < C; c++) out[t][c] = acc[t][c];
}

/* the [C, m] transpose of head h's keys (part 0) or values (part 1) of graph b, zero past n */
INLINE void transpose(const graphs_t *g, int64_t b, int64_t h, int64_t part, int64_t n,
                      int64_t H, const int64_t C, T *out) {
    const int64_t HC = H * C, m = PAD(n);
    const T *rows = g->kv + g->ptr[b] * 2 * HC + part * HC + h * C;
    for (int64_t j = 0; j < n; j++)
        for (int64_t c = 0; c < C; c++) out[c * m + j] = rows[j * 2 * HC + c];
    for (int64_t c = 0; c < C; c++)
        for (int64_t j = n; j < m; j++) out[c * m + j] = 0;
}

/* row pointers of the TI targets of the tile at i0 into x [N, H, C] (head h); targets past
 * the graph read zeros and write nowhere */
INLINE void tile_rows(const T *x, T *w, int64_t base, int64_t i0, int64_t n, int64_t H,
                      const int64_t C, int64_t h, const T *zeros, const T **in, T **out) {
    for (int64_t t = 0; t < TI; t++) {
        const int ok = i0 + t < n;
        const int64_t row = (base + i0 + t) * H * C + h * C;
        if (in) in[t] = ok ? x + row : zeros;
        if (out) out[t] = ok ? w + row : NULL;
    }
}

INLINE void forward_graph(const graphs_t *g, int64_t b, int64_t H, const int64_t C, T scale,
                          T *out, T *stats, T *alpha, T *work) {
    const int64_t base = g->ptr[b], n = g->ptr[b + 1] - base, HC = H * C, m = PAD(n);
    T *KT = work, *S = KT + C * m, *zeros = S + TI * m;
    VEC for (int64_t c = 0; c < C; c++) zeros[c] = 0;
    for (int64_t h = 0; h < H; h++) {
        transpose(g, b, h, 0, n, H, C, KT);
        for (int64_t i0 = 0; i0 < n; i0 += TI) {
            const T *qt[TI];
            T *ot[TI];
            tile_rows(g->q, out, base, i0, n, H, C, h, zeros, qt, ot);
            tile_product(qt, KT, m, C, scale, S);
            /* each row of S becomes exp(s - max), inv: 1 / its sum; phase by phase over the
             * rows of the tile, so the rows' dependency chains overlap */
            const int64_t rows = n - i0 < TI ? n - i0 : TI;
            T mx[TI], inv[TI] = {0};
            for (int64_t t = 0; t < rows; t++) {
                T *st = S + t * m;
                add_biases(g, b, h, i0 + t, n, H, st);
                FOR_J(m, st[j] = j < n ? st[j] : -INFINITY);
            }
            for (int64_t t = 0; t < rows; t++) mx[t] = row_max(S + t * m, m);
            for (int64_t t = 0; t < rows; t++) {
                T *st = S + t * m;
                FOR_J(m, st[j] = vexp(st[j] - mx[t]));
            }
            for (int64_t t = 0; t < rows; t++) inv[t] = 1 / (row_sum(S + t * m, m) + (T)1e-16);
            for (int64_t t = rows; t < TI; t++) FOR_J(m, S[t * m + j] = 0);
            for (int64_t t = 0; t < rows; t++) {
                const int64_t i = i0 + t, pair = g->pair_ptr[b] + i * n;
                T *st = stats + ((base + i) * H + h) * 2, *s = S + t * m;
                st[0] = mx[t];
                st[1] = inv[t];
                if (alpha)
                    for (int64_t j = 0; j < n; j++) alpha[(pair + j) * H + h] = s[j] * inv[t];
                if (g->noise)
                    for (int64_t j = 0; j < n; j++) s[j] *= g->noise[(pair + j) * H + h];
            }
            tile_sum(S, m, n, g->kv + base * 2 * HC + HC + h * C, 2 * HC, C, inv, ot);
        }
    }
}

/* one graph's gq, gkv rows, edge-bias and dense-bias gradients */
INLINE void backward_graph(const graphs_t *g, int64_t b, int64_t H, const int64_t C, T scale,
                           const T *out, const T *stats, const T *gout, T *gq, T *gkv, T *geb,
                           T *gab, T *work) {
    const int64_t base = g->ptr[b], n = g->ptr[b + 1] - base, HC = H * C, m = PAD(n);
    T *KT = work, *VT = KT + C * m, *gK = VT + C * m, *gV = gK + m * C;
    T *S = gV + m * C, *G = S + TI * m, *zeros = G + TI * m;
    VEC for (int64_t c = 0; c < C; c++) zeros[c] = 0;
    for (int64_t h = 0; h < H; h++) {
        transpose(g, b, h, 0, n, H, C, KT);
        transpose(g, b, h, 1, n, H, C, VT);
        memset(gK, 0, sizeof(T) * 2 * m * C); /* gK and gV */
        for (int64_t i0 = 0; i0 < n; i0 += TI) {
            const T *qt[TI], *got[TI], *oit[TI];
            T *gqt[TI];
            tile_rows(g->q, gq, base, i0, n, H, C, h, zeros, qt, gqt);
            tile_rows(gout, NULL, base, i0, n, H, C, h, zeros, got, NULL);
            tile_rows(out, NULL, base, i0, n, H, C, h, zeros, oit, NULL);
            tile_product(qt, KT, m, C, scale, S); /* scores */
            tile_product(got, VT, m, C, 1, G);    /* g_out_i . v_j */
            const int64_t rows = n - i0 < TI ? n - i0 : TI;
            for (int64_t t = rows; t < TI; t++) FOR_J(m, S[t * m + j] = 0; G[t * m + j] = 0);
            T dot[TI], mx[TI], inv[TI];
            for (int64_t t = 0; t < rows; t++) {
                const T *st = stats + ((base + i0 + t) * H + h) * 2;
                mx[t] = st[0];
                inv[t] = st[1];
                add_biases(g, b, h, i0 + t, n, H, S + t * m);
                T d = 0;
                _Pragma("omp simd reduction(+:d)")
                for (int64_t c = 0; c < C; c++) d += got[t][c] * oit[t][c];
                dot[t] = d;
            }
            /* S <- alpha (then times noise: the weight of v_j), G <- score gradient */
            for (int64_t t = 0; t < rows; t++) {
                T *st = S + t * m;
                FOR_J(m, st[j] = vexp(st[j] - mx[t]) * inv[t]);
                FOR_J(m, st[j] = j < n ? st[j] : 0);
            }
            for (int64_t t = 0; t < rows; t++) {
                const int64_t i = i0 + t, pair = g->pair_ptr[b] + i * n;
                T *s = S + t * m, *gw = G + t * m;
                if (g->noise)
                    for (int64_t j = 0; j < n; j++) {
                        const T nz = g->noise[(pair + j) * H + h];
                        gw[j] = s[j] * (gw[j] * nz - dot[t]);
                        s[j] *= nz;
                    }
                else
                    FOR_J(m, gw[j] = s[j] * (gw[j] - dot[t]));
                if (geb)
                    for (int64_t e = g->crow[base + i]; e < g->crow[base + i + 1]; e++)
                        geb[e * H + h] = gw[g->col[e] - base];
                if (gab) {
                    T *gr = gab + b * g->sb + h * g->sh + i * g->si;
                    for (int64_t j = 0; j < n; j++) gr[j * g->sj] += gw[j];
                }
            }
            const T scales[TI] = {scale, scale, scale, scale};
            tile_sum(G, m, n, g->kv + base * 2 * HC + h * C, 2 * HC, C, scales, gqt);
            for (int64_t j = 0; j < n; j++) { /* gK_j += scale sum_t G_tj q_t, gV_j += S_tj go_t */
                T gs[TI], w[TI];
                for (int64_t t = 0; t < TI; t++) {
                    gs[t] = G[t * m + j] * scale;
                    w[t] = S[t * m + j];
                }
                T *gkj = gK + j * C, *gvj = gV + j * C;
                VEC for (int64_t c = 0; c < C; c++) {
                    T ak = gkj[c], av = gvj[c];
                    for (int64_t t = 0; t < TI; t++) {
                        ak += gs[t] * qt[t][c];
                        av += w[t] * got[t][c];
                    }
                    gkj[c] = ak;
                    gvj[c] = av;
                }
            }
        }
        for (int64_t j = 0; j < n; j++) {
            T *gkj = gkv + (base + j) * 2 * HC + h * C;
            VEC for (int64_t c = 0; c < C; c++) {
                gkj[c] = gK[j * C + c];
                gkj[HC + c] = gV[j * C + c];
            }
        }
    }
}

/* scratch per thread: 4 [C, m] blocks, 2 [TI, m] score tiles and a zero row (m = PAD(n_max)) */
#define WORK(n_max, C) ((4 * (C) + 2 * TI) * PAD(n_max) + (C))

#define FOR_GRAPHS(BODY)                                                                      \
    _Pragma("omp parallel num_threads(nthreads)") {                                           \
        T *work = malloc(sizeof(T) * WORK(n_max, C));                                        \
        _Pragma("omp for schedule(dynamic, 4)") for (int64_t b = 0; b < n_graphs; b++) BODY; \
        free(work);                                                                           \
    }

void NAME(dense_attention_forward)(
    int64_t n_graphs, int64_t n_max, int64_t H, int64_t C, const int64_t *ptr,
    const int64_t *pair_ptr, const T *q, const T *kv, const int64_t *crow, const int64_t *col,
    const T *eb, const T *ab, int64_t sb, int64_t sh, int64_t si, int64_t sj, const T *noise,
    double scale, T *out, T *stats, T *alpha, int nthreads) {
    const graphs_t g = {ptr, pair_ptr, crow, col, q, kv, eb, ab, noise, sb, sh, si, sj};
#ifdef SPECIALISE
    if (C == 16) {
        FOR_GRAPHS(forward_graph(&g, b, H, 16, (T)scale, out, stats, alpha, work));
        return;
    }
#endif
    FOR_GRAPHS(forward_graph(&g, b, H, C, (T)scale, out, stats, alpha, work));
}

void NAME(dense_attention_backward)(
    int64_t n_graphs, int64_t n_max, int64_t H, int64_t C, const int64_t *ptr,
    const int64_t *pair_ptr, const T *q, const T *kv, const int64_t *crow, const int64_t *col,
    const T *eb, const T *ab, int64_t sb, int64_t sh, int64_t si, int64_t sj, const T *noise,
    double scale, const T *out, const T *stats, const T *gout, T *gq, T *gkv, T *geb, T *gab,
    int nthreads) {
    const graphs_t g = {ptr, pair_ptr, crow, col, q, kv, eb, ab, noise, sb, sh, si, sj};
#ifdef SPECIALISE
    if (C == 16) {
        FOR_GRAPHS(backward_graph(&g, b, H, 16, (T)scale, out, stats, gout, gq, gkv, geb, gab,
                                  work));
        return;
    }
#endif
    FOR_GRAPHS(backward_graph(&g, b, H, C, (T)scale, out, stats, gout, gq, gkv, geb, gab,
                              work));
}
