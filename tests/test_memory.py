"""keep_freed_memory: a freed large tensor stays resident and is reused, in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = """
import json, sys, torch
from graphattn.memory import keep_freed_memory

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

kept = keep_freed_memory() if sys.argv[1] == "keep" else None
before = rss_mib()
x = torch.ones(64 << 20, dtype=torch.uint8)  # 64 MiB, touched
del x
after_free = rss_mib()
y = torch.ones(48 << 20, dtype=torch.uint8)  # fits in the freed block beside small ones
print(json.dumps(dict(kept=kept, freed=before + 32 > after_free, grown=after_free - before,
                      regrown=rss_mib() - after_free)))
"""


def run(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc")
def test_freed_tensors_stay_resident_and_are_reused_only_when_kept():
    plain, kept = run("plain"), run("keep")
    assert plain["freed"]  # glibc's default: the 64 MiB block went back to the system
    assert plain["regrown"] > 40  # and the next one is page-faulted in afresh
    assert kept["kept"] is True
    assert kept["grown"] > 48  # the freed block is still resident...
    assert kept["regrown"] < 16  # ...and the next large tensor lives in it
