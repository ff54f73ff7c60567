"""Registration, conformance kit, and a plugin module that imports no torch."""

from __future__ import annotations

import subprocess
import sys

import lightly_mm_plugins as lmm
from lightly_mm_plugins.testing import assert_plugin_conforms


def test_plugin_conforms():
    results = assert_plugin_conforms("lightly-mm-mcl")
    assert any(r.kind == "stage_schedulers" and r.name == "mcl" for r in results)
    assert any(r.kind == "objectives" and r.name == "mcl" for r in results)


def test_registered_with_metadata():
    assert "mcl" in lmm.list_names("stage_schedulers")
    assert "mcl" in lmm.list_names("objectives")
    entry = lmm.get_host().registry("objectives").get("mcl")
    assert entry.metadata["scheduler"] == "mcl"
    assert entry.metadata["view"] == "clip"
    sched = lmm.create_stage_scheduler("mcl", epochs=2, num_stages=3)
    assert sched.num_stages() == 3 and sched.plan(2).epochs == 2


def test_plugin_module_imports_no_torch():
    code = (
        "import sys, lightly_mm_mcl, lightly_mm_mcl.plugin as p; "
        "assert p.LIGHTLY_MM_HOOKSPEC == '1.0'; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
