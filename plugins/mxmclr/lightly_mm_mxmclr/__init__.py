"""lightly-mm-mxmclr: multifold cross-modal contrastive learning (MXM-CLR) as a plugin.

Attributes are imported lazily so that loading the plugin (``plugin.py``)
does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["MXMCLRLoss", "MXMCLRObjective", "MultifoldView"]

_WHERE = {
    "MXMCLRLoss": "loss",
    "MXMCLRObjective": "objective",
    "MultifoldView": "views",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
