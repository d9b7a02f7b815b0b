import pytest
import torch

from graphattn.recipes import (
    DATASET_RECIPES,
    RECIPES,
    AttentionPair,
    friend_profile,
    get_recipe,
    recipe_for,
)


def test_molecule_recipes_are_the_benchmark_configuration():
    """The published graphattn-adjacency settings of benchmarks/molecules.py."""
    sol, fs = get_recipe("molecule-regression"), get_recipe("freesolv")
    for r in (sol, fs):
        assert {k: r.model[k] for k in ("hidden_channels", "num_layers", "heads", "dropout",
                                        "mask", "walk_length")} == dict(
            hidden_channels=64, num_layers=4, heads=4, dropout=0.1, mask="adjacency",
            walk_length=16)
        assert tuple(r.model["encodings"]) == ("degree", "rwse")
        assert {k: r.train[k] for k in ("lr", "weight_decay", "batch_size", "grad_clip",
                                        "optimizer", "schedule")} == dict(
            lr=2e-3, weight_decay=1e-4, batch_size=32, grad_clip=5.0, optimizer="adamw",
            schedule="warmup_cosine")
    assert (sol.model["pool"], sol.train["epochs"], sol.train["warmup"]) == ("sum", 40, 3)
    assert (fs.model["pool"], fs.train["epochs"], fs.train["warmup"]) == ("gru", 100, 5)
    assert sol.train["ensemble"] == fs.train["ensemble"] == 3


def test_every_data_set_has_a_recipe_and_unknown_names_fail():
    for dataset in ("freesolv", "solubility", "karate", "sbm", "qm9"):
        assert recipe_for(dataset).name == DATASET_RECIPES[dataset]
    assert recipe_for("csv:x.csv", "classification").name == "molecule-classification"
    with pytest.raises(ValueError, match="unknown recipe 'nope'; expected one of"):
        get_recipe("nope")
    assert {"molecule-regression", "molecule-classification", "node-small",
            "node-large"} <= set(RECIPES)


def test_small_graph_model_and_features():
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    x = friend_profile(edge_index, 3)
    assert torch.allclose(x.sum(1), torch.ones(3))
    assert x[1].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    model = AttentionPair(3, 2)
    again = AttentionPair.from_config(model.config)
    assert again.config == model.config

    class D:
        pass

    d = D()
    d.x, d.edge_index = x, edge_index
    assert model.eval()(d).shape == (3, 2)
