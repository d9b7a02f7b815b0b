"""Building the C kernels (graphattn.nn.kernels.build): compiled from the package's C
sources into a per-source, per-compiler cache, validated before loading, and a clear
fallback to the pure-torch kernels without a compiler."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from graphattn.nn.kernels import build

ROOT = Path(__file__).resolve().parents[3]
needs_compiler = pytest.mark.skipif(not build.available(), reason="the native kernel did not build")


def test_package_data_ships_every_c_source():
    """A wheel or an editable install carries the C sources the build compiles."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["graphattn.nn.kernels"]
    package = Path(build.__file__).parent
    shipped = {path for pattern in globs for path in package.glob(pattern)}
    assert build.SOURCES and all(path.is_file() for path in build.SOURCES + build.HEADERS)
    assert set(build.SOURCES + build.HEADERS) <= shipped


def test_no_compiler_falls_back_with_one_clear_warning(tmp_path):
    code = (
        "import warnings, torch\n"
        "from graphattn.nn import GraphSelfAttention\n"
        "from graphattn.nn.kernels import build\n"
        "torch.manual_seed(0)\n"
        "m = GraphSelfAttention(4, 3, heads=2)\n"
        "x, ei = torch.randn(6, 4), torch.randint(0, 6, (2, 15))\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    out = m(x, ei); m(x, ei)\n"
        "m.impl = 'reference'\n"
        "torch.testing.assert_close(out, m(x, ei), rtol=1e-5, atol=1e-5)\n"
        "assert not build.available()\n"
        "msgs = [str(x.message) for x in w if 'native' in str(x.message)]\n"
        "assert len(msgs) == 1 and 'does-not-exist' in msgs[0], msgs\n"
    )
    env = dict(os.environ, CC=str(tmp_path / "does-not-exist"), GRAPHATTN_CACHE=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@needs_compiler
def test_library_is_cached_per_source_and_compiler(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHATTN_CACHE", str(tmp_path))
    a, b = build.library_path("cc"), build.library_path("clang")
    assert a.parent == tmp_path and a != b and a == build.library_path("cc")


@needs_compiler
def test_builds_from_source_into_an_empty_cache(tmp_path):
    code = ("from graphattn.nn.kernels import build\n"
            "assert build.available(), build._error\n"
            "print(build.library_path(build._compiler()))\n")
    env = dict(os.environ, GRAPHATTN_CACHE=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    built = list(tmp_path.glob("csr_attention-*.so"))
    assert [str(p) for p in built] == [proc.stdout.strip()]


def _run_layer(env: dict) -> subprocess.CompletedProcess:
    code = ("import warnings, torch\n"
            "from graphattn.nn import GraphSelfAttention\n"
        "from graphattn.nn.kernels import build\n"
            "m = GraphSelfAttention(4, 3, heads=2)\n"
            "x, ei = torch.randn(6, 4), torch.randint(0, 6, (2, 15))\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    m(x, ei); m(x, ei)\n"
            "print(build.available(), sum('native' in str(x.message) for x in w))\n")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True)


@pytest.mark.slow
@needs_compiler
def test_truncated_cached_library_is_rebuilt_not_loaded(tmp_path):
    """Issue 22: a truncated library in the cache crashed every later process (SIGBUS)."""
    env = dict(os.environ, GRAPHATTN_CACHE=str(tmp_path))
    assert _run_layer(env).stdout.split() == ["True", "0"]
    (lib,) = tmp_path.glob("csr_attention-*.so")
    good = lib.read_bytes()
    lib.write_bytes(good[: len(good) // 3])  # truncated in place (same name)
    proc = _run_layer(env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "0"]
    assert lib.stat().st_size > len(good) // 3 and build._intact(lib)  # rebuilt
    lib.with_suffix(".json").unlink()  # no record: rebuilt too
    assert _run_layer(env).stdout.split() == ["True", "0"]
    assert lib.with_suffix(".json").exists()


@needs_compiler
def test_empty_cache_variable_means_the_default(monkeypatch):
    monkeypatch.setenv("GRAPHATTN_CACHE", "")
    assert build.library_path("cc").parent == Path.home() / ".cache" / "graphattn"


def test_native_disabled_by_environment_warns_once():
    env = dict(os.environ, GRAPHATTN_NATIVE="0")
    proc = _run_layer(env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "1"]
