r"""Molecule data sets as PyG :class:`~torch_geometric.data.InMemoryDataset`\ s.

Every data set featurizes with :func:`graphattn.chem.from_mol` (so it takes the same
``atom_featurizer``, ``bond_featurizer``, ``fragments`` and ``explicit_h`` arguments), is
processed once into ``root/processed`` (one file per featurizer configuration), and never drops
a row silently: rows that cannot be read are skipped, listed in ``dataset.skipped`` as
``{"index", "smiles", "reason"}`` records (saved beside the processed data, so they survive a
reload) and summarised in a warning.

``root`` defaults to a user cache folder, ``$GRAPHATTN_DATA/<name>`` or
``~/.cache/graphattn/<name>`` (``$XDG_CACHE_HOME`` respected); never the package or the
current directory.

=============== ======== ============================ ========================================
data set        rows     target(s)                    source
=============== ======== ============================ ========================================
FreeSolv        642      ``expt`` (kcal/mol)          embedded (``graphattn/chem/data``)
Solubility      1,025 /  ``SOL`` (log S, mol/L)       embedded, fixed Huuskonen train / test
                257
QM9             ~131k    HOMO, LUMO, gap (eV), ...    optional ``qm9pack`` CSV files
MoleculeNet     varies   as PyG's ``MoleculeNet``     downloaded raw CSV (PyG's layout)
MoleculeCSV     yours    any numeric columns          a CSV/TSV or SDF file of yours
=============== ======== ============================ ========================================
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import json
import math
import os
import os.path as osp
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from rdkit import Chem, rdBase
from torch_geometric.data import InMemoryDataset
from torch_geometric.datasets import MoleculeNet as _PygMoleculeNet

from graphattn.chem._pool import map_chunks
from graphattn.chem.featurize import (
    AtomFeaturizer,
    BondFeaturizer,
    _graph_arrays,
    _graph_data,
    _parse,
)
from graphattn.chem.io import SDF_EXTENSIONS, read_molecules

__all__ = [
    "default_root",
    "MoleculeDataset",
    "FreeSolv",
    "Solubility",
    "QM9",
    "QM9_TARGETS",
    "MoleculeCSV",
    "MoleculeNet",
]

_DATA = Path(__file__).parent / "data"
_MISSING = {"", "nan", "na", "n/a", "none", "null"}


def default_root(name: str) -> str:
    """``$GRAPHATTN_DATA/<name>``, else ``$XDG_CACHE_HOME/graphattn/<name>`` or
    ``~/.cache/graphattn/<name>``."""
    base = os.environ.get("GRAPHATTN_DATA")
    if not base:
        base = osp.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "graphattn")
    return osp.join(osp.expanduser(base), name)


def _floats(values: Sequence[str], columns: Sequence[str]) -> tuple[list[float], str | None]:
    """Target strings -> floats; missing (empty, ``nan``, ``NA``...) -> NaN; infinite or not a
    number -> a skip reason naming the column and the value."""
    out = []
    for value, column in zip(values, columns):
        value = "" if value is None else str(value).strip()
        if value.lower() in _MISSING:
            out.append(math.nan)
            continue
        try:
            number = float(value)
        except ValueError:
            return [], f"target {column!r} is not a number: {value!r}"
        if math.isinf(number):
            return [], f"target {column!r} is not finite: {value!r}"
        out.append(number)
    return out, None


class MoleculeDataset(InMemoryDataset):
    r"""Base class: turns the rows a subclass reads (:meth:`records`) into featurized graphs.

    Subclasses define :meth:`records` and, if it changes the processed data, :meth:`_key`.

    Args:
        root (str, optional): data folder; default :func:`default_root` of the data set.
        transform, pre_transform, pre_filter, force_reload: as in
            :class:`~torch_geometric.data.InMemoryDataset`. Rows ``pre_filter`` rejects are
            the user's choice and not reported as skipped.
        atom_featurizer (AtomFeaturizer, optional), bond_featurizer (BondFeaturizer, optional),
        fragments (str), explicit_h (bool): passed to :func:`graphattn.chem.from_mol`.
        workers (int): processes that featurize a raw file of at least 2,000 molecules when
            it is processed (the same graphs, in the same order, as one process); ``-1``: one
            per usable CPU, ``0``: this process. Off Linux the workers are spawned, not
            forked: from 20,000 molecules, and the script needs an
            ``if __name__ == "__main__":`` guard. (default: ``0``)

    Attributes:
        skipped (list of dict): one ``{"index", "smiles", "reason"}`` record per row that was
            not loaded; ``index`` is the 0-based data row of the raw file(s).
        target_names (list of str): the columns of ``data.y`` (``[1, T]`` per graph).
    """

    name = "molecules"

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        transform: Callable | None = None,
        pre_transform: Callable | None = None,
        pre_filter: Callable | None = None,
        force_reload: bool = False,
        atom_featurizer: AtomFeaturizer | None = None,
        bond_featurizer: BondFeaturizer | None = None,
        fragments: str = "largest",
        explicit_h: bool = False,
        workers: int = 0,
    ) -> None:
        if fragments not in ("largest", "all"):
            raise ValueError(f"fragments must be 'largest' or 'all', got {fragments!r}")
        self.workers = workers
        self.atom_featurizer = atom_featurizer or AtomFeaturizer()
        self.bond_featurizer = bond_featurizer or BondFeaturizer()
        self.fragments, self.explicit_h = fragments, explicit_h
        root = default_root(self.name) if root is None else os.fspath(root)
        # Explicit call: MoleculeNet below also inherits from PyG's MoleculeNet.
        InMemoryDataset.__init__(
            self, root, transform, pre_transform, pre_filter, force_reload=force_reload
        )
        self.load(self.processed_paths[0])
        with open(self.processed_paths[1], encoding="utf-8") as f:
            self.skipped: list[dict] = json.load(f)
        if self.skipped:
            warnings.warn(self._skip_summary(), stacklevel=2)

    # -- what subclasses provide -------------------------------------------------------------
    target_names: list[str] = []

    def records(self) -> Iterator[tuple[int, str | None, Chem.Mol | None, list[float], str | None]]:
        """Yield ``(index, smiles, mol, targets, problem)`` per raw row; ``mol`` may be None
        (then ``smiles`` is parsed); a non-None ``problem`` skips the row with that reason."""
        raise NotImplementedError

    def _key(self) -> str:
        """Whatever besides the featurizer changes the processed data (split, columns...)."""
        return ""

    # -- machinery ---------------------------------------------------------------------------
    @property
    def processed_file_names(self) -> list[str]:
        config = repr((self._key(), self.atom_featurizer, self.bond_featurizer,
                       self.fragments, self.explicit_h))
        tag = hashlib.sha1(config.encode()).hexdigest()[:12]
        return [f"data_{tag}.pt", f"skipped_{tag}.json"]

    def process(self) -> None:
        data_list, skipped = [], []
        kwargs = dict(atom_featurizer=self.atom_featurizer, bond_featurizer=self.bond_featurizer,
                      fragments=self.fragments, explicit_h=self.explicit_h)
        rows = list(self.records())
        graphs = iter(map_chunks(_featurize, [(smiles, mol) for _, smiles, mol, _, problem
                                              in rows if problem is None], self.workers, kwargs))
        for index, smiles, _, y, problem in rows:
            if problem is None:
                graph = next(graphs)
                if isinstance(graph, str):
                    problem = graph
            if problem is not None:
                skipped.append({"index": index, "smiles": smiles, "reason": problem})
                continue
            data = _graph_data(graph, y)
            if self.pre_filter is not None and not self.pre_filter(data):
                continue
            if self.pre_transform is not None:
                data = self.pre_transform(data)
            data_list.append(data)
        if not data_list:
            raise ValueError(
                f"{self.__class__.__name__}: no valid molecule in {self.raw_paths}; "
                f"{len(skipped)} rows skipped, first: {skipped[:3]}"
            )
        self.save(data_list, self.processed_paths[0])
        with open(self.processed_paths[1], "w", encoding="utf-8") as f:
            json.dump(skipped, f, indent=1, ensure_ascii=False)

    def _skip_summary(self, show: int = 5) -> str:
        rows = "; ".join(f"row {r['index']} {r['smiles']!r}: {r['reason']}"
                         for r in self.skipped[:show])
        more = f"; ... ({len(self.skipped) - show} more)" if len(self.skipped) > show else ""
        return (f"{self.__class__.__name__}: skipped {len(self.skipped)} invalid rows "
                f"(kept {len(self)}); all listed in .skipped: {rows}{more}")


def _featurize(molecules: list[tuple[str | None, Chem.Mol | None]], kwargs: dict) -> list:
    """:func:`graphattn.chem.featurize._graph_arrays` of each ``(smiles, mol)`` (``mol`` None:
    parse ``smiles``), or the reason it failed (a string)."""
    out = []
    for smiles, mol in molecules:
        try:
            out.append(_graph_arrays(_parse(smiles) if mol is None else mol, smiles=smiles,
                                     **kwargs))
        except (ValueError, TypeError, RuntimeError) as e:
            out.append(str(e))
    return out


class FreeSolv(MoleculeDataset):
    r"""FreeSolv hydration free energies (642 molecules, Mobley & Guthrie 2014), embedded.

    Target ``expt``: experimental hydration free energy in kcal/mol, ``y`` of shape ``[1, 1]``.
    Reads the copy shipped in ``graphattn/chem/data`` (see ``SOURCES.md`` there): no download.
    Arguments as :class:`MoleculeDataset`.
    """

    name = "freesolv"
    target_names = ["expt"]

    @property
    def raw_file_names(self) -> list[str]:
        return ["freesolv.csv"]

    def download(self) -> None:
        shutil.copy(_DATA / "freesolv.csv", self.raw_dir)

    def records(self):
        with open(self.raw_paths[0], newline="", encoding="utf-8-sig") as f:
            for i, row in enumerate(csv.DictReader(f)):
                y, problem = _floats([row["expt"]], self.target_names)
                yield i, row["smiles"], None, y, problem


class Solubility(MoleculeDataset):
    r"""Huuskonen aqueous solubility with its fixed split: 1,025 train / 257 test, embedded.

    Target ``SOL``: log S (S in mol/L), ``y`` of shape ``[1, 1]``. Molecules are read from the
    SD records; ``data.smiles`` is RDKit's SMILES of the record (the train file's own
    ``smiles`` field is not always valid SMILES). Arguments as :class:`MoleculeDataset`, plus
    ``split`` (``"train"`` or ``"test"``).
    """

    name = "solubility"
    target_names = ["SOL"]

    def __init__(self, root=None, split: str = "train", *args, **kwargs) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.split = split
        super().__init__(root, *args, **kwargs)

    def _key(self) -> str:
        return self.split

    @property
    def raw_file_names(self) -> list[str]:
        return [f"solubility.{self.split}.sdf"]

    def download(self) -> None:
        shutil.copy(_DATA / self.raw_file_names[0], self.raw_dir)

    def records(self):
        yield from _sdf_records(self.raw_paths[0], self.target_names)


def _sdf_records(path: str, targets: Sequence[str]):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f, rdBase.BlockLogs():
        for i, mol in enumerate(Chem.ForwardSDMolSupplier(f)):
            if mol is None:
                yield i, None, None, [], "RDKit could not read this SD record"
                continue
            smiles = Chem.MolToSmiles(mol)
            y, problem = _floats(
                [mol.GetProp(t) if mol.HasProp(t) else "" for t in targets], targets
            )
            yield i, smiles, mol, y, problem


class MoleculeCSV(MoleculeDataset):
    r"""Any CSV/TSV (SMILES column + target columns) or SD file (targets as SD properties).

    Missing target values (empty, ``nan``, ``NA``...) become NaN, so multi-task files with gaps
    load; rows with an unreadable molecule, a target that is not a number or is infinite, too
    many fields, or bytes that are not UTF-8 are skipped and reported. Text files are read by
    :func:`graphattn.chem.io.read_molecules` (UTF-8 with or without BOM, delimiter sniffed
    among ``, \t ; |``, tab for ``.tsv``).

    Args:
        root (str, optional): data folder (default: cache folder named after the file).
        path (str): the ``.csv``, ``.tsv`` (``.gz`` allowed) or ``.sdf`` (``.sdf.gz``) file;
            read in place, never copied or modified.
        smiles_column (str): SMILES column of a CSV. Unused for an SD file: the record is the
            molecule and ``data.smiles`` is RDKit's SMILES of it.
        target_columns (str or list of str): target columns, in the order of ``data.y``.
        **kwargs: as :class:`MoleculeDataset`.

    A changed file (size or modification time) is processed again.
    """

    def __init__(
        self,
        root: str | os.PathLike | None,
        path: str | os.PathLike,
        smiles_column: str = "smiles",
        target_columns: str | Sequence[str] = (),
        **kwargs,
    ) -> None:
        self.path = osp.abspath(os.fspath(path))
        if not osp.isfile(self.path):
            raise FileNotFoundError(f"MoleculeCSV: no such file {self.path!r}")
        self.smiles_column = smiles_column
        targets = [target_columns] if isinstance(target_columns, str) else list(target_columns)
        if not targets:
            raise ValueError("MoleculeCSV needs at least one target column, got none")
        self.target_names = targets
        self.is_sdf = self.path.lower().endswith(SDF_EXTENSIONS)
        if not self.is_sdf:
            header = self._table().columns
            missing = [c for c in targets if c not in header]
            if missing:
                raise ValueError(
                    f"MoleculeCSV: columns {missing} not in {self.path!r}; "
                    f"its columns are {header}"
                )
        stem = osp.basename(self.path).split(".")[0]
        self.name = f"csv/{stem}"
        super().__init__(root, **kwargs)

    def _table(self):
        """The file as :func:`graphattn.chem.io.read_molecules` reads it (raises ValueError
        when the header lacks the SMILES column)."""
        return read_molecules(self.path, format="table", smiles_column=self.smiles_column)

    def _key(self) -> str:
        st = os.stat(self.path)
        return f"{self.path}|{self.smiles_column}|{self.target_names}|{st.st_size}|{st.st_mtime_ns}"

    @property
    def raw_file_names(self) -> list[str]:
        return [self.path]  # absolute: read in place

    def download(self) -> None:
        raise FileNotFoundError(f"MoleculeCSV: no such file {self.path!r}")

    def records(self):
        if self.is_sdf:
            yield from _sdf_records(self.path, self.target_names)
            return
        table = self._table()
        cols = [table.columns.index(c) for c in self.target_names]
        for i, rec in enumerate(table):
            if rec.error is not None:
                yield i, rec.smiles, None, [], f"line {rec.line}: {rec.error}"
                continue
            y, problem = _floats([rec.values[c] for c in cols], self.target_names)
            yield i, rec.smiles, None, y, problem


# name: (qm9pack column, factor to the reported unit, reported unit)
HARTREE_TO_EV = 27.211386245988
QM9_TARGETS: dict[str, tuple[str, float, str]] = {
    "mu": ("Dipole_debye", 1.0, "D"),
    "alpha": ("Polarizability_bohr3", 1.0, "bohr^3"),
    "homo": ("HOMO_au", HARTREE_TO_EV, "eV"),
    "lumo": ("LUMO_au", HARTREE_TO_EV, "eV"),
    "gap": ("HOMO_LUMO_gap_au", HARTREE_TO_EV, "eV"),
    "r2": ("R2_bohr2", 1.0, "bohr^2"),
    "zpve": ("ZPVE_au", HARTREE_TO_EV, "eV"),
    "u0": ("InternalEnergy_0K_au", HARTREE_TO_EV, "eV"),
    "u": ("InternalEnergy_298K_au", HARTREE_TO_EV, "eV"),
    "h": ("Enthalphy_298K_au", HARTREE_TO_EV, "eV"),  # sic: qm9pack's spelling
    "g": ("GibbsFreeEnergy_298K_au", HARTREE_TO_EV, "eV"),
    "cv": ("Heatcapacity_Cv_cal_mol_K", 1.0, "cal/(mol K)"),
}
_QM9_FILES = ["qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv"]
_QM9_HINT = "QM9 needs the optional qm9pack data files: pip install graphattn[qm9]"


def _qm9pack_data_dir() -> Path | None:
    """The installed ``qm9pack/data`` folder, found without importing qm9pack."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


class QM9(MoleculeDataset):
    r"""QM9 (Ramakrishnan et al. 2014) read from the CSV files of the optional ``qm9pack``.

    ``pip install graphattn[qm9]`` installs them (~225 MB); they are read in place (graphattn
    does not import qm9pack), or from ``root/raw/qm9_part{1,2,3}.csv`` when you put them there.
    Targets are converted from the files' atomic units: energies (``homo``, ``lumo``, ``gap``,
    ``zpve``, ``u0``, ``u``, ``h``, ``g``) in **eV**, ``mu`` in D, ``alpha`` in bohr³, ``r2`` in
    bohr², ``cv`` in cal/(mol K) (see :data:`QM9_TARGETS`). Only the molecular graph of the
    SMILES is used, not the 3-D coordinates.

    Args:
        root (str, optional): data folder (default: cache folder ``qm9``).
        targets (sequence of str): keys of :data:`QM9_TARGETS`, in the order of ``data.y``.
        max_molecules (int, optional): keep only the first rows of the files (a quick subset).
        **kwargs: as :class:`MoleculeDataset`.
    """

    name = "qm9"

    def __init__(self, root=None, targets: Sequence[str] = ("homo", "lumo", "gap"),
                 max_molecules: int | None = None, **kwargs) -> None:
        targets = [targets] if isinstance(targets, str) else list(targets)
        unknown = [t for t in targets if t not in QM9_TARGETS]
        if unknown or not targets:
            raise ValueError(f"QM9 targets must be among {list(QM9_TARGETS)}, got {targets}")
        if max_molecules is not None and (not isinstance(max_molecules, int) or max_molecules < 1):
            raise ValueError(f"max_molecules must be a positive int or None, got {max_molecules!r}")
        self.target_names, self.max_molecules = targets, max_molecules
        self.units = [QM9_TARGETS[t][2] for t in targets]
        super().__init__(root, **kwargs)

    def _key(self) -> str:
        return f"{self.target_names}|{self.max_molecules}"

    @property
    def raw_file_names(self) -> list[str]:
        local = [osp.join(self.raw_dir, f) for f in _QM9_FILES]
        package = _qm9pack_data_dir()
        if all(map(osp.exists, local)) or package is None:
            return _QM9_FILES
        return [str(package / f) for f in _QM9_FILES]  # absolute: read in place

    def download(self) -> None:
        if not all(map(osp.exists, self.processed_paths)):
            raise ModuleNotFoundError(
                f"{_QM9_HINT} (or put {', '.join(_QM9_FILES)} into {self.raw_dir})"
            )

    def records(self):
        columns = [QM9_TARGETS[t][0] for t in self.target_names]
        factors = [QM9_TARGETS[t][1] for t in self.target_names]
        i = 0
        for path in self.raw_paths:
            with open(path, newline="", encoding="utf-8-sig") as f:
                for row in csv.DictReader(f):
                    if self.max_molecules is not None and i >= self.max_molecules:
                        return
                    y, problem = _floats([row.get(c) for c in columns], self.target_names)
                    yield i, row["SMILES"], None, [v * s for v, s in zip(y, factors)], problem
                    i += 1


class MoleculeNet(MoleculeDataset, _PygMoleculeNet):
    r"""PyG's :class:`~torch_geometric.datasets.MoleculeNet` (same names, download URLs and
    ``root/<name>/raw`` layout) featurized with graphattn's featurizers.

    Unlike PyG's loader it parses the CSV with :mod:`csv` (quoted fields with commas are kept
    in place) and reports skipped rows. Targets: PyG's columns for ``name``; empty -> NaN.

    Args:
        root (str, optional): data folder (default: cache folder ``moleculenet``).
        name (str): one of ``MoleculeNet.names`` (``"esol"``, ``"freesolv"``, ``"lipo"``,
            ``"bbbp"``, ``"tox21"``, ...), case-insensitive.
        **kwargs: as :class:`MoleculeDataset`.
    """

    def __init__(self, root: str | os.PathLike | None, name: str, **kwargs) -> None:
        if not isinstance(name, str) or name.lower() not in self.names:
            raise ValueError(f"MoleculeNet name must be one of {sorted(self.names)}, got {name!r}")
        self.name = name.lower()
        super().__init__(default_root("moleculenet") if root is None else root, **kwargs)

    def _key(self) -> str:
        return self.name

    def records(self):
        _, _, _, smiles_idx, y_idx = self.names[self.name]
        with open(self.raw_paths[0], newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader)
            names = self.target_names
            for i, row in enumerate(reader):
                if len(row) != len(header):
                    yield i, None, None, [], f"{len(row)} fields, expected {len(header)}"
                    continue
                labels = row[y_idx] if isinstance(y_idx, slice) else [row[y_idx]]
                y, problem = _floats(labels, names)
                yield i, row[smiles_idx], None, y, problem

    @property
    def target_names(self) -> list[str]:
        _, _, _, _, y_idx = self.names[self.name]
        with open(self.raw_paths[0], newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f))
        return header[y_idx] if isinstance(y_idx, slice) else [header[y_idx]]

    def __repr__(self) -> str:
        return f"{self.names[self.name][0]}({len(self)})"
