"""graphattn._cpus: what ``workers=-1`` counts."""

import os
import subprocess
import sys

import pytest

from graphattn._cpus import usable_cpus


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no affinity mask here")
def test_usable_cpus_is_the_affinity_mask():
    assert usable_cpus() == len(os.sched_getaffinity(0)) >= 1


def test_ensemble_counts_cpus_without_importing_rdkit():
    code = ("import sys, graphattn.ensemble as e; n = e._parallel_members(-1, 64, 'cpu'); "
            "assert n >= 1, n; assert 'rdkit' not in sys.modules, 'rdkit imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
