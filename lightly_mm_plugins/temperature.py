"""The logit scale ``1/τ`` of a contrastive loss: fixed, or learnable as CLIP's.

CLIP (Radford et al. 2021, Sec. 2.5) learns the temperature as a log-parametrised
multiplicative scalar ``log(1/τ)`` and caps the scale at 100 "to prevent scaling
the logits by more than 100". open_clip applies that cap to the *parameter*
after every optimiser step (``logit_scale.clamp_(0, log 100)`` in
``open_clip_train/train.py``), not to ``exp(log_scale)`` inside the loss: a cap
inside the forward is a ``clamp`` whose gradient is exactly 0 at and beyond the
cap, so a temperature that reaches it can never come back. :class:`LogitScale`
does the same as open_clip:

* :meth:`LogitScale.forward` returns ``exp(log_scale)`` unclamped (the gradient
  always flows, ``d scale / d log_scale = scale``);
* :meth:`LogitScale.clamp_` projects the parameter back to ``1/τ <= max_scale``.
  The training pipeline calls it after every optimiser step
  (:meth:`lightly_mm_plugins.api.Objective.on_after_optimizer_step`); a script of
  your own calls ``loss_fn.clamp_()`` after ``optimizer.step()``.

A fixed temperature the cap cannot honour (``τ < 1/max_scale``, i.e. below 0.01)
is an error, not silently raised to 0.01.

Example:
    >>> import torch
    >>> scale = LogitScale(temperature=0.07, learnable=True)
    >>> opt = torch.optim.SGD(scale.parameters(), lr=10.0)
    >>> (-scale()).backward()           # pushes 1/τ up, past the cap
    >>> opt.step()
    >>> scale.clamp_()                  # what open_clip does after the step
    >>> round(float(scale.temperature_tensor()), 4)
    0.01
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .losses import check_temperature

__all__ = ["MAX_LOGIT_SCALE", "LogitScale", "LogitScaleMixin"]

#: CLIP's upper bound of the logit scale ``1/τ`` (so ``τ >= 0.01``).
MAX_LOGIT_SCALE = 100.0


class LogitScale(nn.Module):
    """``1/τ``: a Python float (fixed) or ``exp`` of the parameter ``log_scale`` (learnable).

    Args:
        temperature: (Initial) temperature ``τ``, at least ``1 / max_scale``.
        learnable: Learn ``log(1/τ)`` (CLIP). A fixed scale stays an exact Python
            float (no float32 rounding of ``log(1/τ)``) and is not in the state dict.
        max_scale: Cap of ``1/τ`` applied by :meth:`clamp_` (CLIP: 100).

    Example:
        >>> LogitScale(0.1)()
        10.0
        >>> LogitScale(0.005)
        Traceback (most recent call last):
        ...
        ValueError: temperature 0.005 is below 1/max_scale = 0.01: ...
    """

    log_scale: nn.Parameter | None

    def __init__(
        self, temperature: float = 0.07, learnable: bool = False, max_scale: float = MAX_LOGIT_SCALE
    ) -> None:
        super().__init__()
        tau = check_temperature(temperature)
        self.max_scale = float(max_scale)
        if not self.max_scale > 0:
            raise ValueError(f"max_scale must be > 0, got {max_scale!r}")
        if 1.0 / tau > self.max_scale:
            raise ValueError(
                f"temperature {temperature!r} is below 1/max_scale = {1.0 / self.max_scale:g}: "
                f"the logit scale 1/temperature is capped at {self.max_scale:g} (CLIP); use a "
                f"temperature >= {1.0 / self.max_scale:g}"
            )
        self.learnable = bool(learnable)
        self._fixed = 1.0 / tau
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / tau))) if learnable else None

    def forward(self) -> Tensor | float:
        """``1/τ``: the fixed float, or ``exp(log_scale)`` (unclamped, gradient flows)."""
        if self.log_scale is None:
            return self._fixed
        return self.log_scale.exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Project a learnable ``log_scale`` back to ``1/τ <= max_scale`` (after a step)."""
        if self.log_scale is not None:
            self.log_scale.clamp_(max=math.log(self.max_scale))

    def temperature_tensor(self, like: Tensor | None = None) -> Tensor:
        """The current ``τ`` as a detached 0-d tensor (no host-device sync to log it).

        On ``like``'s device and dtype when given, else on the parameter's (CPU for a
        fixed scale).
        """
        if self.log_scale is None:
            if like is None:
                return torch.tensor(1.0 / self._fixed)
            return like.new_full((), 1.0 / self._fixed)
        tau = 1.0 / self.log_scale.detach().exp()
        return tau if like is None else tau.to(like.dtype)

    @property
    def temperature(self) -> float:
        """The current ``τ`` as a float (a host-device sync on an accelerator)."""
        return float(self.temperature_tensor())

    def upgrade_old_state(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        """Load-state-dict pre-hook for the *owning loss* (registered on it).

        Checkpoints written before this module existed keep the parameter as
        ``<loss>.log_scale`` (and a fixed scale as a buffer there); this moves it to
        ``<loss>.logit_scale.log_scale`` (or drops it for a fixed scale).
        """
        old = prefix + "log_scale"
        if old not in state_dict:
            return
        value = state_dict.pop(old)
        if self.log_scale is not None:
            state_dict.setdefault(prefix + "logit_scale.log_scale", value)

    def extra_repr(self) -> str:
        kind = "learnable" if self.log_scale is not None else "fixed"
        return f"{kind}, max_scale={self.max_scale:g}"


class LogitScaleMixin:
    """The temperature API of a loss that owns a :class:`LogitScale` as ``logit_scale``.

    Mixed into ``nn.Module`` losses (``CLIPLoss``, ``MXMCLRLoss``) so that each of them
    exposes the same ``log_scale``, ``clamp_()``, ``temperature`` and
    ``temperature_tensor()``, written once.
    """

    logit_scale: LogitScale

    @property
    def log_scale(self) -> nn.Parameter | None:
        """The learnable parameter ``log(1/τ)`` (None for a fixed temperature)."""
        return self.logit_scale.log_scale

    @torch.no_grad()
    def clamp_(self) -> None:
        """Cap ``1/τ`` at 100 after an optimiser step (open_clip); see :class:`LogitScale`."""
        self.logit_scale.clamp_()

    @property
    def temperature(self) -> float:
        """The current temperature ``τ`` (a host-device sync on an accelerator)."""
        return self.logit_scale.temperature

    def temperature_tensor(self, like: Tensor | None = None) -> Tensor:
        """The current ``τ`` as a detached 0-d tensor (on ``like``'s device and dtype);
        logging it every step needs no host-device synchronisation."""
        return self.logit_scale.temperature_tensor(like)
