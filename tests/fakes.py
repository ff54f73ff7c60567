"""Paths and entry points of the fake plugins used by the host tests."""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
FAKE_PLUGINS = FIXTURES / "fake_plugins"
FAKE_DISTS = FIXTURES / "dists"


def fake_entry_points(*modules: str) -> list[md.EntryPoint]:
    """Entry points named ``lightly-mm-<module>`` pointing at fake plugin modules."""
    return [
        md.EntryPoint(
            name=f"lightly-mm-{m.removeprefix('lmm_')}", value=m, group="lightly_mm_plugins"
        )
        for m in modules
    ]
