"""lightly-mm-plugins: multimodal self-supervised learning for Lightly, as plugins.

Import stays cheap: heavy modules (torch, lightly) load only when used.

Example:
    >>> import lightly_mm_plugins as lmm
    >>> "clip" in lmm.list_names("objectives")  # doctest: +SKIP
    True
    >>> loss = lmm.create_objective(  # doctest: +SKIP
    ...     "clip", embedding_dims={"image": 512, "text": 384}
    ... )
"""

from __future__ import annotations

from typing import Any

from .hookspecs import HOOKSPEC_VERSION, hookimpl, hookspec
from .manager import PluginHost, get_host, reset_host

__version__ = "0.1.0"

__all__ = [
    "HOOKSPEC_VERSION",
    "PluginHost",
    "__version__",
    "create_head",
    "create_objective",
    "create_stage_scheduler",
    "create_view",
    "get_host",
    "hookimpl",
    "hookspec",
    "list_names",
    "reset_host",
]


def list_names(kind: str) -> list[str]:
    """Registered names of ``kind`` (views, objectives, heads, stage_schedulers)."""
    return get_host().registry(kind).names()


def create_objective(name: str, /, **kwargs: Any) -> Any:
    """Build the objective registered as ``name`` (see :class:`api.Objective`)."""
    return get_host().create("objectives", name, **kwargs)


def create_view(name: str, /, **kwargs: Any) -> Any:
    """Build the view registered as ``name``."""
    return get_host().create("views", name, **kwargs)


def create_head(name: str, /, **kwargs: Any) -> Any:
    """Build the head registered as ``name``."""
    return get_host().create("heads", name, **kwargs)


def create_stage_scheduler(name: str, /, **kwargs: Any) -> Any:
    """Build the stage scheduler registered as ``name``."""
    return get_host().create("stage_schedulers", name, **kwargs)
