"""Shared fixtures of the host test suite."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from fakes import FAKE_PLUGINS

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def fake_plugin_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(FAKE_PLUGINS))
    for name in list(sys.modules):
        if name.startswith("lmm_"):
            del sys.modules[name]
    return FAKE_PLUGINS
