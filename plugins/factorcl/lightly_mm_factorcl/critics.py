"""FactorCL's concat critic, evaluated on all pairs without tiling the inputs.

Every FactorCL term scores pairs with a *concat critic* (official
``critic_objectives.py``: ``mlp(d_a + d_b, 512, 1, layers=1, "relu")`` applied
to ``cat[a, b]``)::

    f(a, b) = w_o . act(W_l act(... act(W_1 [a; b] + c_1) ...) + c_l) + c_o

The official code evaluates it on all ``N_a * N_b`` pairs by tiling both inputs
into an ``(N_a, N_b, d_a + d_b)`` tensor. Because the first layer is linear,
``W_1 [a_i; b_j] + c_1 = (W_1^a a_i + c_1) + W_1^b b_j``: we apply the two
column blocks of ``W_1`` once per sample and broadcast-add the results into the
``(N_a, N_b, hidden)`` pre-activation. Values are identical (up to float
rounding); the first layer costs ``(N_a d_a + N_b d_b) * hidden`` instead of
``N_a N_b (d_a + d_b) * hidden`` multiply-adds, and the ``(N_a, N_b, d_a + d_b)``
tiled input (and its gradient) is never materialised.
:func:`tiled_pairwise_scores` keeps the official tiled evaluation as the
reference the tests compare against.

Example:
    >>> import torch
    >>> critic = ConcatCritic(4, 3, hidden_dim=8)
    >>> critic.pairwise(torch.randn(5, 4), torch.randn(6, 3)).shape
    torch.Size([5, 6])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "ConcatCritic", "tiled_pairwise_scores"]

#: Activations of the official ``mlp`` helper.
ACTIVATIONS = ("relu", "tanh")


def _activate_(x: Tensor, activation: str) -> Tensor:
    """In-place activation (both backward passes only need the output)."""
    if activation == "relu":
        return torch.relu_(x)
    return torch.tanh_(x)


class ConcatCritic(nn.Module):
    """Scalar critic ``f(a, b)`` on the concatenation ``[a; b]`` (an MLP).

    Architecture of the official ``mlp(dim, hidden_dim, 1, layers, activation)``:
    ``Linear(d_a + d_b, hidden), act, [Linear(hidden, hidden), act] * layers,
    Linear(hidden, 1)``. The input order matters: ``first`` fills the first
    ``d_a`` columns of the first layer.

    Args:
        first_dim: Size ``d_a`` of the first input.
        second_dim: Size ``d_b`` of the second input.
        hidden_dim: Hidden width (official FactorCL: 512).
        layers: Number of extra hidden ``Linear(hidden, hidden)`` layers
            (official FactorCL: 1, i.e. three Linear layers in all).
        activation: ``"relu"`` (official) or ``"tanh"``.

    Shapes:
        * ``forward(first (N, d_a), second (N, d_b)) -> (N,)``: paired scores
          ``f(first_i, second_i)``.
        * ``pairwise(first (Na, d_a), second (Nb, d_b)) -> (Na, Nb)``:
          ``S[i, j] = f(first_i, second_j)`` (broadcast, no tiling).

    Example:
        >>> import torch
        >>> critic = ConcatCritic(2, 2, hidden_dim=4)
        >>> a, b = torch.randn(3, 2), torch.randn(3, 2)
        >>> torch.allclose(critic.pairwise(a, b).diagonal(), critic(a, b), atol=1e-6)
        True
    """

    def __init__(
        self,
        first_dim: int,
        second_dim: int,
        hidden_dim: int = 512,
        layers: int = 1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if first_dim < 1 or second_dim < 1:
            raise ValueError(
                f"critic input sizes must be positive, got first_dim={first_dim}, "
                f"second_dim={second_dim}"
            )
        if hidden_dim < 1:
            raise ValueError(f"hidden_dim must be positive, got {hidden_dim}")
        if layers < 0:
            raise ValueError(f"layers must be >= 0 (extra hidden layers), got {layers}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.first_dim = first_dim
        self.second_dim = second_dim
        self.activation = activation
        self.input = nn.Linear(first_dim + second_dim, hidden_dim)
        self.hidden = nn.ModuleList(nn.Linear(hidden_dim, hidden_dim) for _ in range(layers))
        self.output = nn.Linear(hidden_dim, 1)

    def _check(self, first: Tensor, second: Tensor) -> None:
        if first.dim() != 2 or second.dim() != 2:
            raise ValueError(
                "critic inputs must be 2-d (N, D) tensors, got shapes "
                f"{tuple(first.shape)} and {tuple(second.shape)}"
            )
        if first.shape[1] != self.first_dim or second.shape[1] != self.second_dim:
            raise ValueError(
                f"critic was built for inputs of size ({self.first_dim}, {self.second_dim}), "
                f"got ({first.shape[1]}, {second.shape[1]}); check the input order and "
                "the conditioning columns"
            )

    def _body(self, pre_activation: Tensor) -> Tensor:
        """Everything after the first Linear layer: ``(..., hidden) -> (...)``."""
        h = _activate_(pre_activation, self.activation)
        for layer in self.hidden:
            h = _activate_(layer(h), self.activation)
        return self.output(h).squeeze(-1)

    def score_concatenated(self, pairs: Tensor) -> Tensor:
        """Scores of already concatenated inputs ``(..., d_a + d_b) -> (...)``."""
        return self._body(self.input(pairs))

    def forward(self, first: Tensor, second: Tensor) -> Tensor:
        self._check(first, second)
        if first.shape[0] != second.shape[0]:
            raise ValueError(
                f"paired critic inputs need the same batch size, got {first.shape[0]} "
                f"and {second.shape[0]}"
            )
        return self.score_concatenated(torch.cat([first, second], dim=-1))

    def pairwise(self, first: Tensor, second: Tensor) -> Tensor:
        """``S[i, j] = f(first_i, second_j)`` for all pairs, ``(Na, Nb)``.

        The first layer is split into its column blocks ``W^a`` and ``W^b``:
        ``pre[i, j] = (W^a first_i + c) + W^b second_j`` (broadcast add).
        """
        self._check(first, second)
        weight = self.input.weight
        part_a = nn.functional.linear(first, weight[:, : self.first_dim], self.input.bias)
        part_b = nn.functional.linear(second, weight[:, self.first_dim :])
        return self._body(part_a.unsqueeze(1) + part_b.unsqueeze(0))


def tiled_pairwise_scores(critic: ConcatCritic, first: Tensor, second: Tensor) -> Tensor:
    """Reference: ``S[i, j] = f(first_i, second_j)`` by tiling, as the official code.

    Builds the ``(Na, Nb, d_a + d_b)`` tensor of all concatenated pairs and
    runs the whole MLP on it (``critic_objectives.py``, ``InfoNCECritic`` /
    ``CLUBInfoNCECritic``). Kept for tests and benchmarks; use
    :meth:`ConcatCritic.pairwise` in training.
    """
    critic._check(first, second)
    na, nb = first.shape[0], second.shape[0]
    pairs = torch.cat(
        [
            first.unsqueeze(1).expand(na, nb, first.shape[1]),
            second.unsqueeze(0).expand(na, nb, second.shape[1]),
        ],
        dim=-1,
    )
    return critic.score_concatenated(pairs)
