"""Discovery through ``importlib.metadata`` and pluggy's tracing.

The host reads its plugins with ``importlib.metadata.entry_points(group=...)``:
these tests check it lists exactly the entry points of that group (with their
distributions), and that ``LIGHTLY_MM_TRACE_PLUGINS=1`` makes pluggy trace every
hook call and registration.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys

from lightly_mm_plugins import PluginHost
from lightly_mm_plugins.hookspecs import ENTRY_POINT_GROUP


def test_host_lists_every_entry_point_of_the_group() -> None:
    eps = md.entry_points(group=ENTRY_POINT_GROUP)
    expected = {ep.name: (ep.dist.name, ep.dist.version, ep.value) for ep in eps if ep.dist}
    assert {"lightly-mm-clip", "lightly-mm-tcl"} <= set(expected)
    host = PluginHost(load=[])  # discovers everything, imports nothing
    found = {
        p.name: (p.distribution, p.version, p.entry_point)
        for p in host.plugins()
        if p.status != "builtin"
    }
    assert found == expected
    assert {p.status for p in host.plugins() if p.status != "builtin"} == {"disabled"}


def test_tracing_shows_hook_calls_and_registrations() -> None:
    code = "import lightly_mm_plugins as l\nl.get_host().plugins()\n"
    env = {
        **os.environ,
        "LIGHTLY_MM_TRACE_PLUGINS": "1",
        "LIGHTLY_MM_LOAD_PLUGINS": "lightly-mm-clip",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "register_objectives" in proc.stderr  # pluggy's hook-call trace
    assert "lightly-mm-clip objectives clip [register]" in proc.stderr
    quiet = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if k != "LIGHTLY_MM_TRACE_PLUGINS"},
        timeout=120,
    )
    assert quiet.returncode == 0 and quiet.stderr == ""
