"""Lazy package attributes (PEP 562), one helper for the host and every plugin.

A plugin's ``plugin.py`` is imported at discovery, which imports the plugin's
package ``__init__``; that must not import torch (discovery stays cheap). So a
package names where each public attribute lives and loads the module on first
access.

Example:
    >>> __getattr__ = lazy_getattr("json", {"JSONDecoder": "decoder"})
    >>> __getattr__("JSONDecoder").__name__
    'JSONDecoder'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``where[name]`` on first access.

    ``where`` maps an attribute to the module holding it: a submodule of
    ``package`` (``"loss"``) or an absolute module (``"lightly_mm_plugins.queue"``,
    anything with a dot). The value is cached in the package's namespace, so the
    import happens once.

    Example (in a plugin's ``__init__.py``)::

        __getattr__ = lazy_getattr(__name__, {"CLIPLoss": "loss"})
    """
    table = dict(where)

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        target = module if "." in module else f"{package}.{module}"
        value = getattr(importlib.import_module(target), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
