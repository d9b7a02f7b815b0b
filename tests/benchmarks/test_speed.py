"""benchmarks/speed.py: every graphattn method computes the same layer as its reference, a
tiny run writes JSON and markdown with the promised ratios."""

from __future__ import annotations

import json

import pytest
import torch

from tests.benchmarks.scripts import load_script

TINY = [dict(kind="sparse", nodes=300, degree=4), dict(kind="full", graphs=12)]


@pytest.fixture(scope="module")
def sp():
    return load_script("speed")


@pytest.mark.slow  # compiles the layer
@pytest.mark.parametrize("case", TINY, ids=["sparse", "full"])
def test_kernel_variants_of_a_method_compute_the_same_outputs(sp, case):
    """'(MKL kernel)', '(bucketed kernel)', '(reference)' and '(compiled)' time the same
    layer (same seed, same weights) another way, so their outputs must agree."""
    inputs = sp.make_inputs(case)
    names = sp.methods_for(case, quick=True)
    outs = {}
    for name in names:
        if name.startswith("graphattn"):
            module, call = sp.make_method(name)
            outs[name] = call(module, inputs)
    groups = ({"graphattn dot": ["graphattn dot (MKL kernel)", "graphattn dot (reference)",
                                 "graphattn dot (compiled)"],
               "graphattn additive": ["graphattn additive (MKL kernel)",
                                      "graphattn additive (compiled)"]}
              if case["kind"] == "sparse" else
              {"graphattn full dot": ["graphattn full dot (bucketed kernel)",
                                      "graphattn full dot (reference)",
                                      "graphattn full dot (compiled)"]})
    for base, variants in groups.items():
        for name in variants:
            torch.testing.assert_close(outs[name], outs[base], rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # compiles the layer
def test_tiny_run_writes_json_markdown_and_ratios(sp, tmp_path, monkeypatch):
    monkeypatch.setattr(sp, "grid", lambda quick: TINY)
    assert sp.main(["--quick", "--no-memory", "--repeats", "1", "--threads", "1",
                    "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "speed.json").read_text())
    assert res["meta"]["threads"] == 1 and res["meta"]["quick"] is True
    methods = {(r["case"], r["method"]) for r in res["results"]}
    assert len(methods) == len(sp.SPARSE_METHODS) + len(sp.FULL_METHODS)
    assert all(r["forward_ms"] > 0 and r["forward+backward_ms"] > 0 for r in res["results"])
    pairs = {(r["graphattn"], r["peer"]) for r in res["ratios"]}
    assert pairs == set(sp.PAIRS)
    by = {(r["case"], r["method"]): r for r in res["results"]}
    for r in res["ratios"]:  # peer time / graphattn time, as printed
        ours, peer = by[(r["case"], r["graphattn"])], by[(r["case"], r["peer"])]
        assert r["forward"] == pytest.approx(peer["forward_ms"] / ours["forward_ms"])
    md = (tmp_path / "speed.md").read_text()
    assert "| full 12 molecules of 10-40 nodes | graphattn full dot | " \
           "to_dense_batch + MultiheadAttention |" in md


def test_a_new_run_keeps_the_hand_written_history(sp, tmp_path):
    md = tmp_path / "speed.md"
    assert sp.kept_history(md) == ""
    md.write_text("# old tables\n\n| a |\n\n" + sp.HISTORY + "\n\nBefore/after notes.\n")
    assert sp.kept_history(md) == sp.HISTORY + "\n\nBefore/after notes.\n"
