"""GraphTransformer.from_pretrained: the encoder's weights from a checkpoint, a new head."""

from __future__ import annotations

import pytest
import torch

from graphattn import GraphTransformer
from graphattn.checkpoint import save_checkpoint
from graphattn.nn.models import PRETRAINED, pretrained_path
from graphattn.recipes import RECIPES

ENCODER = dict(in_channels=5, hidden_channels=8, num_layers=2, heads=2, edge_dim=3,
               encodings=("degree", "rwse"), walk_length=4, task="graph", pool="sum")


def _source(tmp_path, model=None):
    torch.manual_seed(0)
    model = model or GraphTransformer(out_channels=12, **ENCODER)
    return model, save_checkpoint(tmp_path / "source.pt", {
        "model_class": "graphattn.nn.models.GraphTransformer",
        "model_config": model.config, "model_state": model.state_dict(), "task": "graph"})


def test_encoder_weights_come_from_the_source_and_the_head_is_new(tmp_path):
    source, path = _source(tmp_path)
    torch.manual_seed(1)
    model = GraphTransformer.from_pretrained(path, out_channels=1, pool="gru", graph_features=4,
                                             dropout=0.3)
    assert (model.cfg.out_channels, model.cfg.pool, model.cfg.graph_features,
            model.cfg.dropout) == (1, "gru", 4, 0.3)
    own, theirs = model.state_dict(), source.state_dict()
    encoder = [k for k in theirs if not k.startswith("head.")]
    assert encoder and all(torch.equal(own[k], theirs[k]) for k in encoder)
    assert own["head.mlp.lins.0.weight"].shape == (8, 8 + 4)  # the head: new, wider
    assert model.pretrained == str(path)


def test_the_encoder_settings_may_be_repeated_but_not_changed(tmp_path):
    _, path = _source(tmp_path)
    same = GraphTransformer.from_pretrained(path, 1, **ENCODER)  # as a recipe passes them
    assert same.cfg.hidden_channels == 8
    with pytest.raises(ValueError, match=r"hidden_channels=16, pretrained 8"):
        GraphTransformer.from_pretrained(path, 1, **{**ENCODER, "hidden_channels": 16})
    with pytest.raises(ValueError, match=r"in_channels=7, pretrained 5"):
        GraphTransformer.from_pretrained(path, 1, in_channels=7)


def test_a_source_that_is_not_a_graph_transformer_checkpoint_is_refused(tmp_path):
    with pytest.raises(ValueError, match="neither a shipped encoder"):
        GraphTransformer.from_pretrained(tmp_path / "absent.pt")
    with pytest.raises(ValueError, match="neither a shipped encoder"):
        GraphTransformer.from_pretrained("qm10")
    other = save_checkpoint(tmp_path / "other.pt", {
        "model_class": "graphattn.recipes.AttentionPair", "model_config": {},
        "model_state": {}})
    with pytest.raises(ValueError, match="not a checkpoint of a GraphTransformer"):
        GraphTransformer.from_pretrained(other)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        GraphTransformer.from_pretrained(tmp_path / "junk.pt")


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_a_shipped_encoder_is_small_and_fits_the_molecule_recipes(name):
    path = pretrained_path(name)
    assert torch.load(path, weights_only=True)["format"] == "graphattn-checkpoint"
    import os

    assert os.path.getsize(path) <= 5 * 2**20
    from graphattn.chem import from_smiles

    g = from_smiles("CC(=O)Nc1ccc(O)cc1")
    recipe = {k: v for k, v in RECIPES["freesolv"].model.items()
              if k not in ("arch", "descriptors", "pretrained")}
    model = GraphTransformer.from_pretrained(
        name, 1, in_channels=g.num_features, edge_dim=g.edge_attr.size(1), task="graph",
        **recipe)
    assert model.cfg.pool == "gru"
