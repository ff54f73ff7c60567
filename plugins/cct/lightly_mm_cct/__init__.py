"""lightly-mm-cct: Contrastive Conditional Transport / CACR (Zheng et al.) as a plugin.

Attributes are imported lazily so that loading the plugin (``plugin.py``,
what discovery imports) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["CCTLoss", "CCTObjective", "CCTView", "cct_image_transform"]

_WHERE = {
    "CCTLoss": "loss",
    "CCTObjective": "objective",
    "CCTView": "views",
    "cct_image_transform": "views",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
