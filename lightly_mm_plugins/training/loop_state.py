"""The one place that reads Lightning's private training-loop counters.

Mid-epoch checkpoints need how many batches of the current epoch the fit loop
has started, and step-based callbacks how many it has started in all; Lightning
exposes neither publicly (``trainer.global_step`` counts optimizer steps, which
differ under manual optimisation). Both are read here, from
``trainer.fit_loop.epoch_loop``; ``tests/test_loop_state.py`` runs a small fit
and fails when a Lightning release renames or changes them.

Example:
    >>> batches_started_this_epoch(trainer)  # doctest: +SKIP
    3
"""

from __future__ import annotations

from typing import Any


def batches_started_this_epoch(trainer: Any) -> int:
    """Batches of the current epoch the fit loop has taken from the loader."""
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)


def batches_started(trainer: Any) -> int:
    """Training batches started so far over all epochs (the current one included)."""
    return int(trainer.fit_loop.epoch_loop.total_batch_idx) + 1
