"""Argument checks shared by the contrastive losses.

Each check returns the validated value or raises a ``ValueError`` whose message names
the argument and the accepted range, so every loss reports a bad argument the same way.
:func:`check_all` checks a tensor condition without a host-device sync.

Example:
    >>> from lightly_mm_plugins.losses.checks import check_temperature
    >>> check_temperature(0.07)
    0.07
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "check_all",
    "check_chunk_size",
    "check_gather_distributed",
    "check_labels",
    "check_temperature",
]


def check_temperature(temperature: float, name: str = "temperature") -> float:
    """Return ``temperature`` as float or raise ``ValueError`` if it is not > 0."""
    value = float(temperature)
    if not value > 1e-8 or value != value:
        raise ValueError(f"{name} must be a positive number, got {temperature!r}")
    return value


def check_chunk_size(chunk_size: int | None, name: str = "chunk_size") -> int | None:
    """Return ``chunk_size`` (``None`` or an int >= 1) or raise ``ValueError``."""
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(
            f"{name} must be None (dense) or an integer >= 1 (rows per block), got {chunk_size!r}"
        )
    return chunk_size


def check_all(condition: Tensor, message: str) -> None:
    """Raise ``ValueError(message)`` unless every element of ``condition`` is True.

    Why not just ``if not bool(condition.all())``: on an accelerator that line
    makes the host wait for the device (a host-device sync) in every training
    step. So only CPU tensors are checked on the host (free, and a
    ``ValueError``); on other devices the check is queued on the device with
    :func:`torch._assert_async` and a failure surfaces as a device-side
    assertion carrying ``message`` (it invalidates the CUDA context, which is
    acceptable for inputs that are a programming error anyway).

    Example:
        >>> import torch
        >>> check_all(torch.tensor([True, True]), "never raised")
    """
    if condition.device.type == "cpu":
        if not bool(condition.all()):
            raise ValueError(message)
        return
    torch._assert_async(condition.all(), message)


def check_gather_distributed(gather_distributed: bool) -> None:
    """Lightly's guard: gathering needs ``torch.distributed``."""
    if gather_distributed and not torch.distributed.is_available():
        raise ValueError(
            "gather_distributed is True but torch.distributed is not available. "
            "Please set gather_distributed=False or install a torch version with "
            "distributed support."
        )


def check_labels(name: str, x: Tensor | None, size: int) -> None:
    """Raise ``ValueError`` unless ``x`` is ``None`` or has shape ``(size,)`` (one per row)."""
    if x is not None and tuple(x.shape) != (size,):
        raise ValueError(
            f"{name} must have shape ({size},) (one entry per row), got {tuple(x.shape)}"
        )
