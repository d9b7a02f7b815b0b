"""Graph regression on molecules: predict Crippen logP from the molecular graph.

A small data set is built here from SMILES strings with RDKit (atoms and bonds become
one-hot node and edge vectors); the target is RDKit's Crippen logP, a sum of atom
contributions that depends on each atom's neighbourhood. A GraphTransformer with full
attention biased by shortest-path distances (Graphormer-style) plus degree and random-walk
encodings learns it; the script prints the test MAE next to the MAE of predicting the
training mean. Well under a minute on a CPU:

    python examples/graph_regression.py --seed 0
"""

from __future__ import annotations

import argparse

import torch
from rdkit import Chem, RDLogger
from rdkit.Chem import Descriptors

from graphattn.nn import GraphTransformer, SparseRandomWalkPE
from graphattn.train import fit

try:  # graphattn's featurizer: one-hot atoms and bonds
    from graphattn.chem import from_smiles
except ImportError:  # pragma: no cover - fallback to PyG's integer featurizer
    from torch_geometric.utils import from_smiles

SMILES = """
C CC CCC CCCC CCCCC CCCCCC CCCCCCC CC(C)C CC(C)CC CC(C)(C)C C1CCCCC1 C1CCCC1 C1CCC1
CO CCO CCCO CCCCO CC(C)O CC(O)CC OCCO OCC(O)CO C1CCC(O)CC1 CC=O CCC=O CC(C)=O CCC(C)=O
CC(=O)O CCC(=O)O CCCC(=O)O OC(=O)CC(=O)O CC(=O)OC CCOC(=O)C COC CCOCC C1CCOC1 C1CCOCC1
CN CCN CCCN CNC CN(C)C C1CCNCC1 NCCN CC(N)=O NC(=O)N CC#N CCC#N C=C CC=C C=CC=C C#C
c1ccccc1 Cc1ccccc1 CCc1ccccc1 Cc1ccccc1C Cc1cccc(C)c1 Cc1ccc(C)cc1 Oc1ccccc1 Nc1ccccc1
Clc1ccccc1 Brc1ccccc1 Fc1ccccc1 Ic1ccccc1 OC(=O)c1ccccc1 COc1ccccc1 O=Cc1ccccc1
CC(=O)c1ccccc1 N#Cc1ccccc1 [O-][N+](=O)c1ccccc1 c1ccc2ccccc2c1 c1ccc2cc3ccccc3cc2c1
c1ccncc1 Cc1ccncc1 c1cc[nH]c1 c1ccoc1 c1ccsc1 c1cnc[nH]1 c1ccc2[nH]ccc2c1 c1ccc2ncccc2c1
ClCCl ClC(Cl)Cl ClC(Cl)(Cl)Cl FC(F)(F)C CCCl CCBr CCI CCCCCl ClCC(Cl) CS CCS CSC CCSCC
OC1CCCCC1 O=C1CCCCC1 CC1CCCCC1 CC1=CC=CC=C1O Oc1ccc(O)cc1 Oc1cccc(O)c1 Nc1ccc(N)cc1
CC(C)Cc1ccc(cc1)C(C)C(=O)O CC(=O)Oc1ccccc1C(=O)O CN1C=NC2=C1C(=O)N(C(=O)N2C)C
OCC1OC(O)C(O)C(O)C1O c1ccc(cc1)c1ccccc1 c1ccc(cc1)Oc1ccccc1 CCOc1ccc(N)cc1 CC(=O)Nc1ccc(O)cc1
""".split()


def build_dataset(walk_length: int = 8) -> list:
    RDLogger.DisableLog("rdApp.*")
    rwse = SparseRandomWalkPE(walk_length, attr_name="rwse")
    data_list = []
    for smi in SMILES:
        logp = Descriptors.MolLogP(Chem.MolFromSmiles(smi))
        data = rwse(from_smiles(smi))
        data.x, data.edge_attr = data.x.float(), data.edge_attr.float()
        data.y = torch.tensor([[logp]], dtype=torch.float)
        data_list.append(data)
    return data_list


def main(seed: int = 0, epochs: int = 60) -> tuple[float, float]:
    torch.manual_seed(seed)
    data_list = build_dataset()
    perm = torch.randperm(len(data_list))
    n_test = len(data_list) // 5
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    y = torch.cat([d.y for d in data_list])
    model = GraphTransformer(
        data_list[0].num_features, 64, 1, num_layers=3, heads=4, mask="full", task="graph",
        pool="sum", edge_dim=data_list[0].edge_attr.size(1),
        encodings=("degree", "rwse", "spd"), walk_length=8, max_distance=6)
    # the engine: AdamW, targets standardised on the training molecules, no validation split
    # (the last epoch's weights are kept)
    res = fit(model, data_list, kind="regression", epochs=epochs, lr=2e-3, weight_decay=1e-4,
              batch_size=16, train_idx=train_idx, test_idx=test_idx, drop_last=False,
              seed=seed, quiet=True)
    mae = res.metrics["test"]["mae"]
    baseline = (y[train_idx].mean() - y[test_idx]).abs().mean().item()
    print(f"{len(train_idx)} training / {len(test_idx)} test molecules, target Crippen logP: "
          f"seed {seed} test MAE {mae:.3f} (predicting the training mean: {baseline:.3f})")
    return mae, baseline


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    main(args.seed, args.epochs)
