"""The version has one source: ``graphattn.__version__``, read by the build."""

import re

import pytest

import graphattn


def test_version_is_single_sourced_from_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    attr = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "graphattn.__version__"
    assert isinstance(graphattn.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.dev\d+)?", graphattn.__version__)


def test_package_is_typed():
    from pathlib import Path

    assert (Path(graphattn.__file__).parent / "py.typed").is_file()
