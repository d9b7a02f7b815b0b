"""The native C kernels (graphattn.nn.kernels.native): exact gradients (float64 gradcheck),
hubs, thread-count independence, every dtype, the dense kernel's size limit."""

from __future__ import annotations

import pytest
import torch

from graphattn.nn import GraphSelfAttention
from graphattn.nn import functional as GF
from graphattn.nn.kernels import build, dispatch
from graphattn.nn.kernels.native import DenseAttention, FullGraphs, NativeAttention
from graphattn.nn.kernels.structure import EdgeStructure

pytestmark = pytest.mark.skipif(not build.available(), reason="the native kernel did not build")


def inputs(n=7, e=20, H=2, C=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    ei[:, 0] = torch.tensor([3, 3])  # a self loop; node(s) with no in-edge are likely too
    q = torch.randn(n, H, C, generator=g, dtype=dtype, requires_grad=True)
    kv = torch.randn(n, 2, H, C, generator=g, dtype=dtype, requires_grad=True)
    att = torch.randn(H, C, generator=g, dtype=dtype, requires_grad=True)
    bias = torch.randn(e, H, generator=g, dtype=dtype, requires_grad=True)
    noise = (torch.rand(e, H, generator=g, dtype=dtype) > 0.3).to(dtype) / 0.7
    emb = torch.randn(e, H, C, generator=g, dtype=dtype, requires_grad=True)
    return EdgeStructure(ei, n, n), q, kv, emb, att, bias, noise


@pytest.mark.parametrize("score", ["dot", "additive"])
@pytest.mark.parametrize("with_noise", [False, True])
@pytest.mark.parametrize("with_emb", [False, True])
def test_gradcheck_float64(score, with_noise, with_emb):
    st, q, kv, emb, att, bias, noise = inputs()
    att = att if score == "additive" else None
    noise = noise if with_noise else None
    emb = emb if with_emb else None

    def f(q, kv, emb, att, bias):
        return NativeAttention.apply(q, kv, emb, att, bias, noise, st, 0.2)[0]

    args = (q, kv, emb, att, bias)
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("score", ["dot", "additive"])
@pytest.mark.parametrize("with_emb", [False, True])
def test_targets_with_a_zero_gradient_are_skipped_exactly(score, with_emb):
    """Targets whose output gradient is all zero (nodes outside the loss, after the last
    layer) pass none back: the backward skips their edges in both passes and the gradients
    stay exact (gradcheck through a loss on every third target only)."""
    st, q, kv, emb, att, bias, noise = inputs(n=12, e=40, seed=4)
    att = att if score == "additive" else None
    emb = emb if with_emb else None
    labelled = (torch.arange(12) % 3 == 0).double().view(-1, 1, 1)

    def f(q, kv, emb, att, bias):
        return NativeAttention.apply(q, kv, emb, att, bias, noise, st, 0.2)[0] * labelled

    args = (q, kv, emb, att, bias)
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-7)
    out = NativeAttention.apply(q, kv, emb, att, bias, noise, st, 0.2)[0]
    grads = torch.autograd.grad(out, [q, kv, bias], torch.zeros_like(out))
    assert all(not g.any() for g in grads)  # a zero gradient everywhere: zeros, not garbage


@pytest.mark.parametrize("score", ["dot", "additive"])
def test_hub_with_10k_neighbours_and_isolated_nodes_equal_reference(score):
    torch.manual_seed(0)
    n = 10_050
    ei = torch.stack([torch.arange(10_000), torch.zeros(10_000, dtype=torch.long)])
    ei = torch.cat([ei, torch.randint(0, 50, (2, 200))], 1)  # nodes >= 50 only send
    x = torch.randn(n, 6, dtype=torch.float64)
    ref = GraphSelfAttention(6, 4, heads=2, score=score, impl="reference").double()
    out_r = ref(x, ei)
    ref.impl = "fused"
    out_n = ref(x, ei)
    torch.testing.assert_close(out_n, out_r, rtol=1e-10, atol=1e-10)
    assert torch.isfinite(out_n).all()


@pytest.mark.parametrize("score", ["dot", "additive"])
def test_result_does_not_depend_on_thread_count(score):
    """Each output row is written by one thread: outputs and node gradients are bitwise
    equal for 1 and 2 threads (the att gradient is summed per thread, so only close)."""
    st, q, kv, emb, att, bias, noise = inputs(n=300, e=3000, H=4, C=8, dtype=torch.float32)
    att = att if score == "additive" else None
    results = []
    threads = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            out, alpha = NativeAttention.apply(q, kv, emb, att, bias, noise, st, 0.2)
            grads = torch.autograd.grad(out.pow(2).sum(), [q, kv, emb, bias]
                                        + ([att] if att is not None else []))
            results.append((out, alpha, *grads))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(results[0][:6], results[1][:6]):
        assert torch.equal(a, b)
    for a, b in zip(results[0][6:], results[1][6:]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


@pytest.mark.parametrize("score", ["dot", "additive"])
@pytest.mark.parametrize("H,C", [(8, 8), (4, 16), (2, 32), (1, 64), (3, 12)])
def test_float_kernels_of_every_channel_size_equal_the_float64_kernel(score, H, C):
    """float32 runs copies specialised for C = 8, 16, 32, 64 (and a generic one, C = 12),
    with its own vectorised exp; float64 runs the generic code with libm's exp."""
    st, q, kv, emb, att, bias, noise = inputs(n=60, e=600, H=H, C=C, seed=1)
    att = att if score == "additive" else None
    args64 = [q, kv, emb, att, bias]
    args32 = [t.detach().float().requires_grad_() if t is not None else None for t in args64]
    grads = []
    for args, n in ((args64, noise), (args32, noise.float())):
        out, alpha = NativeAttention.apply(*args, n, st, 0.2)
        wanted = [t for t in args if t is not None]
        grads.append((out, alpha, *torch.autograd.grad((out * out.detach()).sum(), wanted)))
    for a, b in zip(*grads):
        a = a.detach()
        torch.testing.assert_close(b.detach().double(), a, rtol=1e-5,
                                   atol=1e-5 * float(a.abs().max()))


@pytest.mark.parametrize("score", ["dot", "additive"])
@pytest.mark.parametrize("dtype,H,C", [(torch.float64, 2, 3), (torch.float32, 4, 8),
                                       (torch.float32, 3, 5), (torch.bfloat16, 2, 8)])
def test_shared_rows_equal_the_same_row_as_every_key_and_value(score, dtype, H, C):
    """kv [N, C]: one row read as the key and the value of every head; its gradient is the
    sum of the expanded [N, 2, H, C] rows' gradients, and the pass over the sources is
    skipped when the row needs none."""
    st, q, _, _, att, bias, noise = inputs(n=40, e=300, H=H, C=C, seed=3)
    x = torch.randn(40, C, dtype=torch.float64)
    acc = build.compute_dtype(dtype)
    att = att.detach().to(acc).requires_grad_() if score == "additive" else None
    q = q.detach().to(dtype).requires_grad_()
    bias, noise = bias.detach().to(acc), noise.to(acc)
    shared = x.to(dtype).requires_grad_()
    expanded = shared.detach().clone().requires_grad_()
    g = torch.randn(40, H, C).to(dtype)
    results = []
    for rows, kv in ((shared, shared), (expanded, expanded[:, None, None].expand(-1, 2, H, C))):
        out, alpha = NativeAttention.apply(q, kv, None, att, bias, noise, st, 0.2, 0.7)
        wanted = [t for t in (q, rows, att) if t is not None]
        results.append((out, alpha, *torch.autograd.grad(out, wanted, g)))
    tol = dict(rtol=2.0 ** -7, atol=1e-2) if dtype == torch.bfloat16 else {}
    for a, b in zip(*results):
        torch.testing.assert_close(a.float(), b.float(), **tol)
    out, _ = NativeAttention.apply(q, shared.detach(), None, att, bias, noise, st, 0.2, 0.7)
    (gq,) = torch.autograd.grad(out, [q], g)  # no source pass: the same query gradient
    torch.testing.assert_close(gq, results[0][2])
    with pytest.raises(ValueError, match="no edge embedding"):
        NativeAttention.apply(q, shared, q.new_ones(300, H, C), att, bias, noise, st, 0.2)


@pytest.mark.parametrize("score", ["dot", "additive"])
@pytest.mark.parametrize("with_emb", [False, True])
@pytest.mark.parametrize("H,C", [(4, 8), (3, 12)])
def test_bfloat16_rows_give_the_float32_numbers_rounded(score, with_emb, H, C):
    """bfloat16 node rows (CPU autocast) are read exactly into float32 and the float32
    arithmetic is the same: on bfloat16-representable inputs the output and the node
    gradients are the float32 kernel's rounded to bfloat16 (the backward reads the rounded
    output for the softmax's dot term, an error each edge adds to its target's and source's
    gradient: a few bfloat16 steps of the largest one); alpha and the float32 inputs'
    gradients are float32."""
    st, q, kv, emb, att, bias, noise = inputs(n=60, e=600, H=H, C=C, seed=2,
                                             dtype=torch.float32)
    att = att if score == "additive" else None
    emb = emb if with_emb else None
    rows = [q, kv, emb]
    rounded = [t.detach().bfloat16().float().requires_grad_() if t is not None else None
               for t in rows]
    halves = [t.detach().bfloat16().requires_grad_() if t is not None else None for t in rows]
    g = torch.randn(q.shape).bfloat16()
    results = []
    for r in (rounded, halves):
        out, alpha = NativeAttention.apply(*r, att, bias, noise, st, 0.2)
        wanted = [t for t in (*r, att, bias) if t is not None]
        results.append((out, alpha, *torch.autograd.grad(out, wanted, g.to(out.dtype))))
    (out32, alpha32, *g32), (out16, alpha16, *g16) = results
    assert out16.dtype == torch.bfloat16 and alpha16.dtype == torch.float32
    ulp = 2.0 ** -8  # one bfloat16 rounding, should the float32 sums round differently
    torch.testing.assert_close(out16.float(), out32.bfloat16().float(), rtol=ulp, atol=1e-6)
    torch.testing.assert_close(alpha16, alpha32, rtol=1e-6, atol=1e-7)
    for a, b in zip(g16, g32):
        expected = b.bfloat16().float() if a.dtype == torch.bfloat16 else b
        torch.testing.assert_close(a.float(), expected, rtol=ulp,
                                   atol=8 * ulp * float(b.abs().max()))


def test_disabled_block_uses_the_mkl_kernel_with_the_same_result():
    torch.manual_seed(0)
    m = GraphSelfAttention(5, 3, heads=2, score="additive")
    x, ei = torch.randn(9, 5), torch.randint(0, 9, (2, 30))
    with build.disabled():
        assert not build.available()
        out_mkl = m(x, ei)
    assert build.available()
    torch.testing.assert_close(m(x, ei), out_mkl, rtol=1e-5, atol=1e-5)


def dense_inputs(sizes=(3, 0, 1, 17, 34, 5), H=2, C=3, dtype=torch.float64, seed=0,
                 heads_in_bias=None):
    """A batch of graphs of the given sizes (an empty one, a single node, and graphs across
    the kernel's 16-source blocks), edges inside each graph, and every kind of bias."""
    g = torch.Generator().manual_seed(seed)
    sizes = torch.tensor(sizes)
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)])
    N = int(ptr[-1])
    ei = torch.cat([torch.randint(int(ptr[b]), int(ptr[b + 1]), (2, 3 * int(n)), generator=g)
                    for b, n in enumerate(sizes.tolist()) if n > 0], 1)
    st = EdgeStructure(ei, N, N)
    q = torch.randn(N, H, C, generator=g, dtype=dtype, requires_grad=True)
    kv = torch.randn(N, 2, H, C, generator=g, dtype=dtype, requires_grad=True)
    eb = torch.randn(ei.size(1), H, generator=g, dtype=dtype, requires_grad=True)
    M = int(sizes.max()) + 2  # a padded bias, larger than the largest graph
    ab = torch.randn(sizes.numel(), heads_in_bias or H, M, M, generator=g, dtype=dtype,
                     requires_grad=True)
    P = int((sizes * sizes).sum())
    noise = (torch.rand(P, H, generator=g, dtype=dtype) > 0.3).to(dtype) / 0.7
    return sizes, st, q, kv, eb, ab, noise


def dense_reference(sizes, st, q, kv, eb, ab, noise):
    """The same attention written out per graph with dense torch ops."""
    outs, alphas, ptr, pair = [], [], 0, 0
    H = q.size(1)
    src, dst = st.src_long, st.dst_long
    for b, n in enumerate(sizes.tolist()):
        if n == 0:
            continue
        qb, kb, vb = q[ptr:ptr + n], kv[ptr:ptr + n, 0], kv[ptr:ptr + n, 1]
        s = torch.einsum("ihc,jhc->hij", qb, kb) / q.size(-1) ** 0.5
        mask = (dst >= ptr) & (dst < ptr + n)
        bias = s.new_zeros(H, n, n).index_put((torch.arange(H).repeat_interleave(
            int(mask.sum())), (dst[mask] - ptr).repeat(H), (src[mask] - ptr).repeat(H)),
            eb[mask].t().reshape(-1), accumulate=True)
        s = s + bias + ab[b, :, :n, :n]
        alpha = torch.softmax(s, -1)  # (H, i, j)
        nz = noise[pair:pair + n * n].view(n, n, H).permute(2, 0, 1)
        outs.append(torch.einsum("hij,jhc->ihc", alpha * nz, vb))
        alphas.append(alpha.permute(1, 2, 0).reshape(n * n, H))
        ptr, pair = ptr + n, pair + n * n
    return torch.cat(outs), torch.cat(alphas)


@pytest.mark.parametrize("heads_in_bias", [1, 2])
def test_dense_kernel_equals_dense_reference_and_its_gradients_check(heads_in_bias):
    sizes, st, q, kv, eb, ab, noise = dense_inputs(heads_in_bias=heads_in_bias)
    graphs = FullGraphs(sizes, st)
    eb_sorted = eb.index_select(0, st.perm)
    out, alpha = DenseAttention.apply(q, kv, eb_sorted, ab, noise, graphs, True)
    ab_ref = ab.expand(-1, q.size(1), -1, -1)
    ref_out, ref_alpha = dense_reference(sizes, st, q, kv, eb_sorted, ab_ref, noise)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(alpha, ref_alpha, rtol=1e-10, atol=1e-10)

    def f(q, kv, eb, ab):
        return DenseAttention.apply(q, kv, eb, ab, noise, graphs, False)[0]

    assert torch.autograd.gradcheck(f, (q, kv, eb_sorted, ab), eps=1e-6, atol=1e-7,
                                    fast_mode=True)


@pytest.mark.parametrize("H,C", [(4, 16), (3, 12)])
def test_float_dense_kernel_equals_the_float64_one_and_ignores_the_thread_count(H, C):
    """float32 (specialised for C = 16, generic otherwise, vectorised exp) against float64;
    one thread per graph, so 1 and 2 threads give bitwise equal results."""
    sizes, st, q, kv, eb, ab, noise = dense_inputs(sizes=(40, 9, 16, 23), H=H, C=C, seed=2)
    graphs = FullGraphs(sizes, st)
    args64 = [q, kv, eb.index_select(0, st.perm), ab]
    args32 = [t.detach().float().requires_grad_() for t in args64]
    results = {}
    threads = torch.get_num_threads()
    try:
        for name, args, n, t in (("64", args64, noise, 1), ("32", args32, noise.float(), 1),
                                 ("32 on 2 threads", args32, noise.float(), 2)):
            torch.set_num_threads(t)
            out, alpha = DenseAttention.apply(*args, n, graphs, True)
            grads = torch.autograd.grad((out * out.detach()).sum(), args)
            results[name] = [x.detach() for x in (out, alpha, *grads)]
    finally:
        torch.set_num_threads(threads)
    for a, b, c in zip(results["64"], results["32"], results["32 on 2 threads"]):
        torch.testing.assert_close(b.double(), a, rtol=1e-5, atol=1e-5 * float(a.abs().max()))
        assert torch.equal(b, c)


def test_full_layer_uses_the_native_kernel_up_to_its_size_limit_with_equal_results(
        monkeypatch):
    """Batches of small graphs run the native dense kernel, a batch with a graph over
    NATIVE_FULL_MAX_NODES the bucketed kernels; both equal the reference path."""
    calls, apply = [], DenseAttention.apply
    monkeypatch.setattr(dispatch.DenseAttention, "apply", lambda *a: calls.append(1) or
                        apply(*a))
    torch.manual_seed(0)
    m = GraphSelfAttention(6, 4, heads=2, mask="full", edge_dim=3)
    for sizes, native_expected in (([5, 30, 1], True), ([5, 300], False)):
        batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        ptr = GF.graph_sizes(batch, batch.numel()).cumsum(0) - torch.tensor(sizes)
        ei = torch.cat([torch.randint(int(p), int(p) + n, (2, 2 * n)) for p, n in
                        zip(ptr.tolist(), sizes)], 1)
        x, ea = torch.randn(batch.numel(), 6), torch.randn(ei.size(1), 3)
        calls.clear()
        m.impl = "auto"
        out = m(x, ei, ea, batch=batch)
        assert bool(calls) == native_expected
        m.impl = "reference"
        torch.testing.assert_close(out, m(x, ei, ea, batch=batch), rtol=1e-5, atol=1e-5)


def test_a_tensor_of_another_dtype_is_refused_not_read_as_garbage():
    _, q, kv, *_ = inputs(n=5, dtype=torch.float32)
    graphs = FullGraphs(torch.tensor([5]))
    bias = torch.zeros(1, q.size(1), 5, 5, dtype=torch.float64)
    with pytest.raises(TypeError, match="float64 tensor among torch.float32"):
        DenseAttention.apply(q, kv, None, bias, None, graphs, False)
