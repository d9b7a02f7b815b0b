import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphattn.metrics import TargetScaler, check_targets, clean, compute_metrics, rmse


def test_per_target_metrics_beside_the_pooled_mean():
    target = torch.tensor([[1.0, 10.0], [2.0, math.nan], [3.0, 30.0]])
    out = torch.tensor([[1.0, 12.0], [2.0, 0.0], [5.0, 30.0]])
    m = compute_metrics(out, target, "regression", ["logS", "mp"])
    assert m["per_target"]["logS"]["rmse"] == pytest.approx(math.sqrt(4 / 3))
    assert m["per_target"]["mp"]["rmse"] == pytest.approx(math.sqrt(2))  # NaN row skipped
    assert m["rmse"] == pytest.approx((math.sqrt(4 / 3) + math.sqrt(2)) / 2)
    assert "per_target" not in compute_metrics(out[:, :1], target[:, :1], "regression")
    ml = compute_metrics(torch.tensor([[2.0, -1.0], [-2.0, 1.0]]),
                         torch.tensor([[1.0, 0.0], [0.0, 1.0]]), "multilabel")
    assert ml["per_target"]["y0"] == {"roc_auc": 1.0, "accuracy": 1.0}


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=20))
def test_scaler_round_trip(values):
    y = torch.tensor(values, dtype=torch.float64).view(-1, 1)
    s = TargetScaler.fit(y)
    assert torch.allclose(s.inverse(s.transform(y.float())).double(), y, atol=1e-2, rtol=1e-4)


def test_check_targets_names_the_bad_value():
    check_targets(torch.tensor([[0.0], [2.0], [math.nan]]), "classification")
    check_targets(torch.tensor([1, 0, -1]), "classification")
    with pytest.raises(ValueError, match="'logS' of item 1 is inf"):
        check_targets(torch.tensor([[0.5], [math.inf]]), "regression", ["logS"])
    with pytest.raises(ValueError, match="class ids .* item 0 is 0.5"):
        check_targets(torch.tensor([[0.5], [1.0]]), "classification")
    with pytest.raises(ValueError, match="0/1 labels"):
        check_targets(torch.tensor([[0.0, 1.0], [2.0, math.nan]]), "multilabel")


def test_clean_makes_json_safe():
    assert clean({"a": math.nan, "b": [torch.tensor(2.0), math.inf]}) == {"a": None,
                                                                          "b": [2.0, None]}
    assert math.isnan(rmse(torch.tensor([1.0]), torch.tensor([math.nan])))


def test_checkpoint_and_train_do_not_import_each_other():
    import ast
    import pathlib

    import graphattn

    root = pathlib.Path(graphattn.__file__).parent
    tree = ast.parse((root / "checkpoint.py").read_text())
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "graphattn.train" not in names and "graphattn.metrics" in names
