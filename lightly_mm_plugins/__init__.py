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

from typing import TYPE_CHECKING, Any

from .lazy import lazy_getattr

if TYPE_CHECKING:
    from .hookspecs import HOOKSPEC_VERSION, hookimpl, hookspec
    from .manager import PluginHost, get_host, reset_host

__version__ = "0.1.0"

#: Attributes loaded on first access (PEP 562), so that ``import
#: lightly_mm_plugins`` costs nothing until the host is used.
_LAZY = {
    "HOOKSPEC_VERSION": "hookspecs",
    "hookimpl": "hookspecs",
    "hookspec": "hookspecs",
    "PluginHost": "manager",
    "get_host": "manager",
    "reset_host": "manager",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


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


def _host() -> PluginHost:
    """The process-wide host (imported here, not at package import)."""
    from .manager import get_host

    return get_host()


def list_names(kind: str) -> list[str]:
    """Registered names of ``kind`` (views, objectives, heads, stage_schedulers)."""
    return _host().registry(kind).names()


def create_objective(name: str, /, **kwargs: Any) -> Any:
    """Build the objective registered as ``name`` (see :class:`api.Objective`)."""
    return _host().create("objectives", name, **kwargs)


def create_view(name: str, /, **kwargs: Any) -> Any:
    """Build the view registered as ``name``."""
    return _host().create("views", name, **kwargs)


def create_head(name: str, /, **kwargs: Any) -> Any:
    """Build the head registered as ``name``."""
    return _host().create("heads", name, **kwargs)


def create_stage_scheduler(name: str, /, **kwargs: Any) -> Any:
    """Build the stage scheduler registered as ``name``."""
    return _host().create("stage_schedulers", name, **kwargs)
