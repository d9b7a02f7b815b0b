"""The native C kernel: exact gradients (float64 gradcheck), hubs, thread-count independence,
and a clear fallback where it cannot be built."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from graphattn.nn import GraphSelfAttention, native
from graphattn.nn.native import NativeAttention
from graphattn.nn.sparse_kernel import EdgeStructure

pytestmark = pytest.mark.skipif(not native.available(), reason="the native kernel did not build")


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


def test_no_compiler_falls_back_with_one_clear_warning(tmp_path):
    code = (
        "import warnings, torch\n"
        "from graphattn.nn import GraphSelfAttention, native\n"
        "torch.manual_seed(0)\n"
        "m = GraphSelfAttention(4, 3, heads=2)\n"
        "x, ei = torch.randn(6, 4), torch.randint(0, 6, (2, 15))\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    out = m(x, ei); m(x, ei)\n"
        "m.impl = 'reference'\n"
        "torch.testing.assert_close(out, m(x, ei), rtol=1e-5, atol=1e-5)\n"
        "assert not native.available()\n"
        "msgs = [str(x.message) for x in w if 'native' in str(x.message)]\n"
        "assert len(msgs) == 1 and 'does-not-exist' in msgs[0], msgs\n"
    )
    env = dict(os.environ, CC=str(tmp_path / "does-not-exist"), GRAPHATTN_CACHE=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_library_is_cached_per_source_and_compiler(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHATTN_CACHE", str(tmp_path))
    a, b = native.library_path("cc"), native.library_path("clang")
    assert a.parent == tmp_path and a != b and a == native.library_path("cc")


def test_disabled_block_uses_the_mkl_kernel_with_the_same_result():
    torch.manual_seed(0)
    m = GraphSelfAttention(5, 3, heads=2, score="additive")
    x, ei = torch.randn(9, 5), torch.randint(0, 9, (2, 30))
    with native.disabled():
        assert not native.available()
        out_mkl = m(x, ei)
    assert native.available()
    torch.testing.assert_close(m(x, ei), out_mkl, rtol=1e-5, atol=1e-5)


def test_builds_from_source_into_an_empty_cache(tmp_path):
    code = ("from graphattn.nn import native\n"
            "assert native.available(), native._error\n"
            "print(native.library_path(native._compiler()))\n")
    env = dict(os.environ, GRAPHATTN_CACHE=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    built = list(tmp_path.glob("csr_attention-*.so"))
    assert [str(p) for p in built] == [proc.stdout.strip()]
