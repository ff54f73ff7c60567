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


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of training runs: the 2-core CI box is shared,
    and intra-op threads only oversubscribe it (use with ``pytest.mark.usefixtures``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
