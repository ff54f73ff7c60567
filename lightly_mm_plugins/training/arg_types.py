"""``--method-args`` / ``--view-args`` / ``--scheduler-args`` against the factory's signature.

The names must be parameters of the factory (close matches suggested), and each
value parsed from the command line or a config file must fit the parameter's
annotation: ``projection_dim=64.5`` for ``projection_dim: int`` is
"projection_dim expects int, got 64.5 (float)".

Example:
    >>> def factory(projection_dim: int = 64, temperature: float = 0.07): ...
    >>> check_component_arguments(factory, {"projection_dim": "abc"}, "--x")
    Traceback (most recent call last):
    ...
    lightly_mm_plugins.errors.ConfigError: --x: projection_dim expects int, got 'abc' (str)
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _annotations(factory: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations of ``factory``'s parameters (those that resolve)."""
    target = factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]
    try:
        return typing.get_type_hints(target)
    except Exception:
        pass
    hints: dict[str, Any] = {}
    namespace = getattr(target, "__globals__", {})
    for name, value in getattr(target, "__annotations__", {}).items():
        try:
            hints[name] = eval(value, namespace) if isinstance(value, str) else value
        except Exception:
            continue  # an annotation we cannot resolve is not checked
    return hints


def type_name(tp: Any) -> str:
    """``int``, ``float | None``, ``list[str]``, ``'mask' | 'group'`` ..."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "None"
    if origin is not None:
        args = ", ".join("..." if a is Ellipsis else type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def matches(value: Any, tp: Any) -> bool:
    """Whether a value parsed from the command line / YAML fits annotation ``tp``.

    ``int`` takes integers only (not ``64.5``, not ``True``), ``float`` takes
    integers too, sequences take lists (JSON has no tuples); types this does
    not know (classes, callables, ``Any``) accept anything.
    """
    if tp is Any or tp is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return _is_int(value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    seq = (list, tuple, collections.abc.Sequence, collections.abc.Iterable)
    if tp in seq or origin in seq:
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args))
        inner = args[0] if args else Any
        return all(matches(v, inner) for v in value)
    if tp in (dict, Mapping) or origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            return False
        if len(args) == 2:
            return all(matches(k, args[0]) and matches(v, args[1]) for k, v in value.items())
        return True
    return True


def check_component_arguments(
    factory: Callable[..., Any], kwargs: Mapping[str, Any], what: str
) -> None:
    """Check the names and value types of ``kwargs`` against ``factory``'s signature.

    ``what`` names the source, e.g. ``"--method-args: objective 'clip'"``.

    Raises:
        ArgumentError: an argument the factory does not take.
        ConfigError: a value whose type does not fit the annotation (named).
    """
    from ..registry import check_arguments

    check_arguments(factory, kwargs, what, check_missing=False)
    hints = _annotations(factory)
    for name, value in kwargs.items():
        if name in hints and not matches(value, hints[name]):
            raise ConfigError(
                f"{what}: {name} expects {type_name(hints[name])}, got {value!r} "
                f"({type(value).__name__})"
            )
