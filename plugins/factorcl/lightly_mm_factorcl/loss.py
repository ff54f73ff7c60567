"""FactorCL's mutual-information bounds: InfoNCE (lower) and NCE-CLUB (upper).

Both follow the official ``critic_objectives.py`` (``InfoNCECritic``,
``CLUBInfoNCECritic``) exactly, with a concat critic
(:class:`~lightly_mm_factorcl.critics.ConcatCritic`, hidden 512, no temperature,
no normalisation) evaluated on all pairs by broadcasting instead of tiling.

Notation: a batch of ``N`` pairs ``(x_i, y_i)``; the critic scores ``f``/``g``.

* InfoNCE lower bound (Oord et al. 2018; FactorCL Sec. 3), with
  ``S[i, j] = f(x_j, y_i)`` (the official tiling: row ``i`` holds anchor
  ``y_i`` against every ``x_j``)::

      I_NCE(x; y) = 1/N sum_i f(x_i, y_i) - 1/N sum_i logsumexp_j f(x_j, y_i) + log N
      L_NCE       = -I_NCE                        (InfoNCEBound.forward, minimised)

  ``I_NCE <= log N`` always, since ``f(x_i, y_i) <= logsumexp_j f(x_j, y_i)``.

* NCE-CLUB upper bound (Cheng et al. 2020's CLUB with an InfoNCE-trained
  critic; FactorCL Sec. 3). The critic ``g`` takes its inputs in the order
  ``[y, x]``, ``S[i, j] = g(y_i, x_j)``::

      I_CLUB(x; y) = 1/N sum_i g(y_i, x_i) - 1/N^2 sum_{i,j} g(y_i, x_j)   (forward)
      learning_loss = -[1/N sum_i g(y_i, x_i) - 1/N sum_i logsumexp_j g(y_i, x_j) + log N]

  ``forward`` is minimised by the encoders (removes information);
  ``learning_loss`` trains only the CLUB critic, with its own optimizer.
  With the optimal InfoNCE critic ``g*(y, x) = log p(y|x) + c(y)``,
  ``I_CLUB = I(X;Y) + E_x KL(p(y) || p(y|x)) >= I(X;Y)``.

With ``gather_distributed=True`` the keys ``x`` of all ranks are gathered (with
gradient, :func:`lightly_mm_plugins.losses.gather_cat`): every local anchor
``y_i`` is scored against the global batch, its positive sits at column
``i + rank_offset``, and ``log N`` uses the global batch size.

Example:
    >>> import torch
    >>> nce = InfoNCEBound(8, 8, hidden_dim=32)
    >>> x, y = torch.randn(16, 8), torch.randn(16, 8)
    >>> bool(nce.lower_bound(x, y) <= torch.log(torch.tensor(16.0)))
    True
    >>> club = NCECLUBBound(8, 8, hidden_dim=32)
    >>> club(x, y).shape, club.learning_loss(x, y).shape
    (torch.Size([]), torch.Size([]))
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lightly_mm_plugins.losses import check_gather_distributed, gather_cat, rank_offset

from .critics import ConcatCritic, tiled_pairwise_scores

__all__ = ["InfoNCEBound", "NCECLUBBound"]


def _check_pair(name: str, x: Tensor, y: Tensor) -> None:
    if x.dim() != 2 or y.dim() != 2:
        raise ValueError(
            f"{name}: expected x and y of shape (N, D), got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{name}: x and y must hold the same N pairs, got {x.shape[0]} and {y.shape[0]} rows"
        )
    if x.shape[0] < 2:
        raise ValueError(f"{name}: a contrastive bound needs N >= 2 pairs, got {x.shape[0]}")


class _CriticBound(nn.Module):
    """Shared plumbing: one concat critic, pair scoring, gathering of keys."""

    def _setup(
        self,
        first_dim: int,
        second_dim: int,
        hidden_dim: int,
        layers: int,
        activation: str,
        gather_distributed: bool,
        efficient: bool,
    ) -> None:
        check_gather_distributed(gather_distributed)
        self.critic = ConcatCritic(first_dim, second_dim, hidden_dim, layers, activation)
        self.gather_distributed = gather_distributed
        self.efficient = efficient

    def _pairwise(self, first: Tensor, second: Tensor) -> Tensor:
        if self.efficient:
            return self.critic.pairwise(first, second)
        return tiled_pairwise_scores(self.critic, first, second)

    def _keys(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Gathered keys and the column of each local anchor's positive."""
        n = x.shape[0]
        x_all = gather_cat(x, self.gather_distributed)
        positives = torch.arange(n, device=x.device) + rank_offset(n, self.gather_distributed)
        return x_all, positives


def _nce(scores: Tensor, positives: Tensor) -> Tensor:
    """``1/N sum_i S[i, p_i] - 1/N sum_i logsumexp_j S[i, j] + log N_keys``."""
    rows = torch.arange(scores.shape[0], device=scores.device)
    joint = scores[rows, positives].mean()
    return joint - scores.logsumexp(dim=1).mean() + math.log(scores.shape[1])


class InfoNCEBound(_CriticBound):
    """InfoNCE lower bound with a concat critic; ``forward`` returns ``-I_NCE``.

    Official ``InfoNCECritic`` (``critic_objectives.py``): critic input order
    ``[x, y]``, anchors ``y_i``, negatives ``x_j``, no temperature.

    Args:
        x_dim: Size of ``x``.
        y_dim: Size of ``y``.
        hidden_dim: Critic width (official: 512).
        layers: Extra hidden critic layers (official: 1).
        activation: ``"relu"`` (official) or ``"tanh"``.
        gather_distributed: Score local anchors against the keys of all ranks.
        efficient: Broadcast the first layer (default); False tiles the inputs
            like the official code (same values, more memory).

    Shapes:
        ``forward(x (N, x_dim), y (N, y_dim)) -> ()``.

    Example:
        >>> import torch
        >>> loss_fn = InfoNCEBound(4, 2, hidden_dim=16)
        >>> loss = loss_fn(torch.randn(8, 4), torch.randn(8, 2))
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        hidden_dim: int = 512,
        layers: int = 1,
        activation: str = "relu",
        gather_distributed: bool = False,
        efficient: bool = True,
    ) -> None:
        super().__init__()
        self._setup(x_dim, y_dim, hidden_dim, layers, activation, gather_distributed, efficient)

    def scores(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``S[i, j] = f(x_j, y_i)`` ``(N, N_keys)`` and the positive column per row."""
        _check_pair(type(self).__name__, x, y)
        x_all, positives = self._keys(x)
        return self._pairwise(x_all, y).T, positives

    def lower_bound(self, x: Tensor, y: Tensor) -> Tensor:
        """The estimate ``I_NCE(x; y)`` (nats, ``<= log N``)."""
        scores, positives = self.scores(x, y)
        return _nce(scores, positives)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return -self.lower_bound(x, y)


class NCECLUBBound(_CriticBound):
    """NCE-CLUB upper bound; ``forward`` returns ``I_CLUB``, ``learning_loss`` trains ``g``.

    Official ``CLUBInfoNCECritic`` (``critic_objectives.py``): the critic takes
    ``[y, x]`` (``y`` first), ``forward`` is the CLUB estimate (minimised by the
    encoders), ``learning_loss`` is ``-I_NCE`` with the same critic (minimised by
    the critic's own optimizer only).

    Args:
        x_dim: Size of ``x``.
        y_dim: Size of ``y``.
        hidden_dim: Critic width (official: 512).
        layers: Extra hidden critic layers (official: 1).
        activation: ``"relu"`` (official) or ``"tanh"``.
        gather_distributed: Score local anchors against the keys of all ranks.
        efficient: Broadcast the first layer (default); False tiles.

    Shapes:
        ``forward(x (N, x_dim), y (N, y_dim)) -> ()``, ``learning_loss`` likewise.

    Example:
        >>> import torch
        >>> club = NCECLUBBound(4, 4, hidden_dim=16)
        >>> x = torch.randn(8, 4)
        >>> estimate = club(x, x + 0.1 * torch.randn(8, 4))
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        hidden_dim: int = 512,
        layers: int = 1,
        activation: str = "relu",
        gather_distributed: bool = False,
        efficient: bool = True,
    ) -> None:
        super().__init__()
        # input order [y, x], as CLUBInfoNCECritic concatenates
        self._setup(y_dim, x_dim, hidden_dim, layers, activation, gather_distributed, efficient)

    def scores(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``S[i, j] = g(y_i, x_j)`` ``(N, N_keys)`` and the positive column per row."""
        _check_pair(type(self).__name__, x, y)
        x_all, positives = self._keys(x)
        return self._pairwise(y, x_all), positives

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        scores, positives = self.scores(x, y)
        rows = torch.arange(scores.shape[0], device=scores.device)
        return scores[rows, positives].mean() - scores.mean()

    def learning_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """``-I_NCE`` with the CLUB critic: the critic's own training loss."""
        scores, positives = self.scores(x, y)
        return -_nce(scores, positives)
