r"""Reading molecule files record by record: SMILES lists, CSV/TSV tables and SD files.

:func:`read_molecules` never stops at a bad record: every record comes back, with its line
number, its original columns and either a SMILES (or an RDKit molecule) or an ``error`` saying
why it cannot be used. Callers (``graphattn predict``, :class:`~graphattn.chem.MoleculeCSV`)
then write one output row per input record, in input order.

Formats (chosen from the file name; ``-`` is standard input, sniffed from its content):

=================== ========================================================================
``.sdf`` ``.sd``    SD records; columns ``smiles`` (RDKit's SMILES of the record), ``name``
(``.gz`` too)       (the title line) and every ``> <property>`` found in the file
``.csv`` ``.tsv``   a table with a header line; delimiter sniffed among ``, \t ; |`` (``.tsv``:
``.tab`` (``.gz``)  tab); the SMILES column is ``smiles_column``, else the column named
                    ``smiles`` (any case), else the one column whose name contains "smiles",
                    else the first column whose second-line value parses as SMILES
anything else       one SMILES per line, optionally followed by a name (after blanks, a comma
(``.smi``, ``.txt``, or a semicolon): columns ``smiles``, ``name``. A first line whose first
stdin)              field names the SMILES (``smiles name``, ``SMILES,id,mw``) is a header,
                    not a record; its delimiter then splits every line into its columns.
=================== ========================================================================

Text is UTF-8 (a byte-order mark is dropped) or UTF-16 with its byte-order mark; a line that is
not valid UTF-8 becomes a record with an ``error``, it does not stop the file. Line endings may
be ``\n``, ``\r\n`` or ``\r``. Blank lines, and ``#`` comment lines of SMILES lists, are not
records. One record per line: a quoted CSV field cannot span lines.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import os
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from rdkit import Chem, rdBase

__all__ = ["MoleculeRecord", "MoleculeFile", "read_molecules", "SDF_EXTENSIONS",
           "TABLE_EXTENSIONS"]

SDF_EXTENSIONS = (".sdf", ".sd", ".sdf.gz", ".sd.gz")
TABLE_EXTENSIONS = (".csv", ".tsv", ".tab", ".csv.gz", ".tsv.gz")
_DELIMITERS = ",\t;|"
_NEWLINE = re.compile(r"\r\n|\r|\n")  # as bytes.splitlines: no other line breaks
_SMI_LINE = re.compile(r"^\s*([^\s,;]*)[\s,;]*(.*?)\s*$", re.S)
_SMILES_NAMES = {"smiles", "smi", "canonical_smiles", "isomeric_smiles", "smiles_string"}


@dataclass
class MoleculeRecord:
    """One record of a molecule file.

    Attributes:
        line (int): 1-based line number in the file (SD files: the record's first line).
        smiles (str): the SMILES as written (SD files: RDKit's SMILES of the record; ``""``
            when the record cannot be read).
        mol (rdkit.Chem.Mol or None): the parsed molecule of an SD record; ``None`` for text
            files (parse ``smiles``) and for unreadable records.
        values (list of str): the record's fields, one per :attr:`MoleculeFile.columns`.
        error (str or None): why the record cannot be used (not UTF-8, wrong number of fields,
            empty SMILES, unreadable SD record); ``None`` otherwise. An invalid SMILES is
            *not* detected here: parsing it is the caller's job (and gives the reason).
    """

    line: int
    smiles: str
    mol: Chem.Mol | None = None
    values: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class MoleculeFile:
    """What :func:`read_molecules` returns: the columns, the format, and the records.

    Attributes:
        columns (list of str): the input columns, in file order (a header's names, or
            ``["smiles", "name"]`` for a SMILES list).
        smiles_column (int): position of the SMILES in ``columns``.
        format (str): ``"sdf"``, ``"table"`` (a file with a header line) or ``"smiles"``.
        delimiter (str or None): the field delimiter of a text file (``None``: whitespace).
        notes (list of str): remarks on how the file was read (e.g. a header that also parses
            as SMILES), for the caller to show.
        records: iterator of :class:`MoleculeRecord`, in file order (the bytes are read at
            once, records are split and parsed as they are iterated; iterate once).
    """

    columns: list[str]
    smiles_column: int
    format: str
    delimiter: str | None
    records: Iterator[MoleculeRecord]
    notes: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[MoleculeRecord]:
        return self.records


def _read_bytes(source) -> bytes:
    if source == "-":
        stream = sys.stdin
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            return buffer.read()
        text = stream.read()  # a text stream (an embedding program, tests)
        try:
            return text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return text.encode("utf-8", "replace")
    path = os.fspath(source)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a folder, expected a molecule file")
    with open(path, "rb") as f:
        data = f.read()
    if path.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path!r} is not a readable gzip file: {e}") from None
    return data


def _lines(data: bytes) -> Iterator[tuple[int, str | None, str | None]]:
    """``(line number, text, error)`` of each line; text is ``None`` when it cannot be decoded."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = data.decode("utf-16", errors="replace")
        for i, line in enumerate(_NEWLINE.split(text.removesuffix("\n").removesuffix("\r")),
                                 start=1):
            if "\ufffd" in line:
                yield i, None, "not valid UTF-16 text"
            elif "\x00" in line:
                yield i, None, "contains a NUL character"
            else:
                yield i, line, None
        return
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    for i, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield i, None, (f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                            f"{e.start + 1})")
            continue
        if "\x00" in line:
            yield i, None, "contains a NUL byte"
            continue
        yield i, line, None


def _looks_like_sdf(data: bytes) -> bool:
    """A line that is exactly ``M  END`` (end of a molfile) or ``$$$$`` (end of a record)."""
    ends = {b"M  END", b"$$$$"}
    return any(line.rstrip() in ends for line in data[:1 << 16].splitlines())


def read_molecules(source: str | os.PathLike, smiles_column: str | None = None,
                   format: str | None = None) -> MoleculeFile:
    """Open a molecule file for reading record by record (see the module docstring).

    Args:
        source (str or path): the file, or ``"-"`` for standard input.
        smiles_column (str, optional): the SMILES column of a table; giving it means the
            first line is a header (also for a ``.smi`` or stdin).
        format (str, optional): ``"sdf"``, ``"table"`` or ``"smiles"``; default: from the
            file name (stdin: from its content).

    Returns:
        :class:`MoleculeFile`: columns, format, and an iterator of :class:`MoleculeRecord`.

    Raises:
        FileNotFoundError, IsADirectoryError, PermissionError: the file cannot be opened.
        ValueError: the file as a whole cannot be read as molecules: a table without the
            SMILES column (the message lists the columns), an unknown ``format``.
    """
    if format not in (None, "sdf", "table", "smiles"):
        raise ValueError(f"format must be 'sdf', 'table' or 'smiles', got {format!r}")
    name = "<stdin>" if source == "-" else os.fspath(source)
    lower = name.lower()
    data = _read_bytes(source)
    if format is None:
        if lower.endswith(SDF_EXTENSIONS) or (source == "-" and _looks_like_sdf(data)):
            format = "sdf"
        elif lower.endswith(TABLE_EXTENSIONS) or smiles_column is not None:
            format = "table"
        else:
            format = "smiles"
    if format == "sdf":
        return _read_sdf(data)
    return _read_text(data, name, format, smiles_column,
                      "\t" if lower.endswith((".tsv", ".tab", ".tsv.gz")) else None)


# ------------------------------------------------------------------------------------ text

def _sniff(line: str) -> str | None:
    """The delimiter among ``, \\t ; |`` found most often in ``line``; ``None``: whitespace."""
    counts = {d: line.count(d) for d in _DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else None


def _split(line: str, delimiter: str | None, width: int | None = None) -> list[str]:
    if delimiter is None:
        return line.split(None, -1 if width is None else max(width - 1, 0))
    return next(csv.reader([line], delimiter=delimiter))


def _parses(smiles: str) -> bool:
    if not smiles or any(c.isspace() for c in smiles):
        return False
    with rdBase.BlockLogs():
        return Chem.MolFromSmiles(smiles) is not None


def _smiles_header(fields: list[str]) -> int | None:
    names = [f.strip().lower() for f in fields]
    for i, n in enumerate(names):
        if n in _SMILES_NAMES:
            return i
    hits = [i for i, n in enumerate(names) if "smiles" in n]
    return hits[0] if len(hits) == 1 else None


def _read_text(data: bytes, name: str, format: str, smiles_column: str | None,
               delimiter: str | None) -> MoleculeFile:
    lines = list(_lines(data))

    def skipped(text: str) -> bool:  # blank, or a comment of a SMILES list
        return not text.strip() or (format == "smiles" and text.lstrip().startswith("#"))

    readable = [(i, t) for i, t, err in lines if err is None and not skipped(t)]
    head = next(((i, t, err) for i, t, err in lines if err is not None or not skipped(t)),
                None)
    if head is not None and head[2] is not None:
        if format == "table":
            raise ValueError(f"{name}: line {head[0]}, the header, is {head[2]}")
        head = None  # a SMILES list: an unreadable first line is a record with an error
    notes: list[str] = []
    first = head[1] if head else ""
    if delimiter is None:
        delimiter = _sniff(first)
    header_line = None
    fields = _split(first, delimiter) if head else []
    col = _smiles_header(fields) if fields else None
    if smiles_column is not None:
        names = [f.strip() for f in fields]
        if smiles_column not in names:
            raise ValueError(f"{name}: no column {smiles_column!r}; the first line has "
                             f"{names}")
        col, header_line = names.index(smiles_column), head[0]
    elif format == "smiles":  # a header only when its first field names the SMILES
        if col == 0 and not _parses(fields[0].strip()):
            header_line = head[0]
        else:
            col = None
    elif col is not None:
        header_line = head[0]
    elif head is not None:  # a table without a SMILES-named column: look at line 2
        header_line = head[0]
        later = [t for i, t in readable if i > header_line]
        second = _split(later[0], delimiter) if later else []
        col = next((j for j, v in enumerate(second) if _parses(v.strip())), None)
        if col is None:
            raise ValueError(
                f"{name}: cannot tell which column holds the SMILES; its columns are "
                f"{[f.strip() for f in fields]} (choose one with --smiles-column)")
        if col < len(fields) and _parses(fields[col].strip()):
            notes.append(f"line {header_line} is taken as the header although its "
                         f"{fields[col].strip()!r} reads as a SMILES (tables need a header)")
    if header_line is not None:
        columns = [f.strip() for f in fields]
        fmt = "table"
    else:
        columns, col, fmt = ["smiles", "name"], 0, "smiles"

    def records() -> Iterator[MoleculeRecord]:
        width = len(columns)
        for i, text, err in lines:
            if i == header_line:
                continue
            if err is not None:
                yield MoleculeRecord(i, "", None, [""] * width, err)
                continue
            if skipped(text):
                continue
            if fmt == "smiles":  # the SMILES ends at the first blank, comma or semicolon
                values = list(_SMI_LINE.match(text).groups())
            else:
                try:
                    values = _split(text, delimiter, width)
                except csv.Error as e:  # e.g. a field over csv.field_size_limit()
                    yield MoleculeRecord(i, "", None, [""] * width, f"unreadable line: {e}")
                    continue
            error = None
            if len(values) > width:
                error = f"{len(values)} fields, the header has {width}"
                values = values[:width]
            values += [""] * (width - len(values))
            smiles = values[col].strip()
            if error is None and not smiles:
                error = "empty SMILES (no atoms)"
            yield MoleculeRecord(i, smiles, None, values, error)

    return MoleculeFile(columns, col, fmt, delimiter, records(), notes)


# ------------------------------------------------------------------------------------- SDF

_PROP = re.compile(r"^>.*?<([^>]+)>")


def _sdf_blocks(data: bytes) -> Iterator[tuple[int, str | None, str | None]]:
    """``(first line, record text, error)`` per SD record (records end at ``$$$$``)."""
    start, block, bad = None, [], None
    for i, text, err in _lines(data):
        if start is None:
            start = i
        if err is not None and bad is None:
            bad = f"line {i}: {err}"
        if text is not None and text.strip() == "$$$$":
            yield start, "\n".join(block) + "\n", bad
            start, block, bad = None, [], None
            continue
        block.append(text if text is not None else "")
    if block and (bad is not None or any(t.strip() for t in block)):
        yield start, "\n".join(block) + "\n", bad


def _sdf_properties(block: str) -> dict[str, str]:
    props, key, value = {}, None, []
    after_end = False
    for line in block.splitlines():
        if not after_end:
            after_end = line.startswith("M  END")
            continue
        m = _PROP.match(line)
        if m:
            if key is not None:
                props[key] = "\n".join(value).strip()
            key, value = m.group(1), []
        elif key is not None:
            value.append(line)
    if key is not None:
        props[key] = "\n".join(value).strip()
    return props


def _mol_from_block(block: str) -> tuple[Chem.Mol | None, str | None]:
    with rdBase.BlockLogs():
        mol = Chem.MolFromMolBlock(block)
        if mol is not None:
            return mol, None
        raw = Chem.MolFromMolBlock(block, sanitize=False)
        if raw is None:
            return None, "RDKit cannot read this SD record"
        try:
            Chem.SanitizeMol(raw)
        except Exception as e:  # RDKit raises its own exception types
            return None, f"invalid molecule: {str(e).strip() or type(e).__name__}"
    return None, "RDKit cannot read this SD record"


def _read_sdf(data: bytes) -> MoleculeFile:
    blocks = list(_sdf_blocks(data))
    names: list[str] = []
    for _, block, _ in blocks:
        for key in _sdf_properties(block):
            if key not in names:
                names.append(key)
    columns = ["smiles", "name", *[n for n in names if n not in ("smiles", "name")]]

    def records() -> Iterator[MoleculeRecord]:
        for line, block, bad in blocks:
            props = _sdf_properties(block)
            title = block.split("\n", 1)[0].strip()
            values = ["", title, *[props.get(n, "") for n in columns[2:]]]
            if bad is not None:
                yield MoleculeRecord(line, "", None, values, bad)
                continue
            mol, error = _mol_from_block(block)
            smiles = Chem.MolToSmiles(mol) if mol is not None else ""
            if mol is not None and mol.GetNumAtoms() == 0:
                mol, error = None, "SD record with no atoms"
            values[0] = smiles
            yield MoleculeRecord(line, smiles, mol, values, error)

    return MoleculeFile(columns, 0, "sdf", None, records())
