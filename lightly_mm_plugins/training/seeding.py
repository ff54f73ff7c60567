"""Every seed of a training run, from one rule: a hash of ``(seed, epoch, index)``.

``lightly-mm train`` seeds the global generators once (``pl.seed_everything``,
for model initialisation); after that, every random draw of training comes
from one of two seeds derived with :class:`numpy.random.SeedSequence`:

* :func:`sample_seeds`: the seed of sample ``i`` in epoch ``e``, with which its
  views (augmentations) are drawn in the loader worker;
* :func:`step_seed`: the seed of training batch ``b`` of epoch ``e``, with
  which the global generators are re-seeded before the step (dropout, random
  masks inside an objective).

The order of an epoch's instances (which form its batches) comes from a
generator of its own, seeded with :func:`epoch_seed`. All three depend only on
``(seed, epoch, index)``, not on worker count,
prefetching, rank or where an interrupted run resumed, so a resumed run draws
exactly the random numbers an uninterrupted one does.

Example:
    >>> step_seed(0, 1, 2) == step_seed(0, 1, 2) != step_seed(0, 1, 3)
    True
    >>> len(sample_seeds(0, epoch=1, num_samples=5))
    5
"""

from __future__ import annotations

import random

import numpy as np
import torch

#: Salt of the seed sequences (kept: changing it changes every run's draws).
_SALT = 0x5EED


def sample_seeds(seed: int, epoch: int, num_samples: int) -> list[int]:
    """The 32-bit seeds of every sample's views in ``epoch``:
    ``SeedSequence([seed, epoch, salt]).generate_state(num_samples)``."""
    return np.random.SeedSequence([seed, epoch, _SALT]).generate_state(num_samples).tolist()


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s shuffle (its own ``torch.Generator``)."""
    return seed * 100_003 + epoch


def step_seed(seed: int, epoch: int, batch_idx: int) -> int:
    """The seed of training batch ``batch_idx`` of ``epoch`` (a 32-bit hash of the three)."""
    return int(np.random.SeedSequence([seed, epoch, batch_idx, _SALT]).generate_state(1)[0])


def seed_cpu_generators(seed: int) -> None:
    """Seed Python's, NumPy's and torch's CPU global generators.

    The CPU generator only: ``torch.manual_seed`` also seeds CUDA, and with CUDA not
    initialised that queues a lazy call that formats a stack trace every time (~2 ms).
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)


def seed_step_generators(seed: int) -> None:
    """Seed every global generator before a training step: the CPU ones, and CUDA's
    once CUDA is initialised (a GPU run has moved the model there before its first
    step)."""
    seed_cpu_generators(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)
