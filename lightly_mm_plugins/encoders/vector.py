"""MLP encoder for vector modalities.

FactorCL's backbone for its synthetic data is ``mlp(100, 512, 128, layers=2)``
from the official ``critic_objectives.py``::

    Linear(d, h), ReLU, [Linear(h, h), ReLU] x num_layers, Linear(h, out)

so ``num_layers`` counts the *hidden-to-hidden* layers: ``num_layers=2`` has
four ``Linear`` layers in all. Inputs ``(N, input_dim)``, outputs ``(N, output_dim)``.

Example:
    >>> import torch
    >>> VectorEncoder(100)(torch.randn(4, 100)).shape
    torch.Size([4, 128])
"""

from __future__ import annotations

from torch import Tensor, nn

from ..api import Encoder

__all__ = ["VectorEncoder"]


class VectorEncoder(Encoder):
    """FactorCL's MLP backbone (see the module docstring); no local features.

    Args:
        input_dim: Size of the input vectors (required).
        hidden_dim: Width of the hidden layers (FactorCL: 512).
        output_dim: Feature size (FactorCL: 128).
        num_layers: Hidden-to-hidden layers (FactorCL: 2).
    """

    def __init__(
        self, input_dim: int, hidden_dim: int = 512, output_dim: int = 128, num_layers: int = 2
    ) -> None:
        super().__init__()
        for arg, value, low in (
            ("input_dim", input_dim, 1),
            ("hidden_dim", hidden_dim, 1),
            ("output_dim", output_dim, 1),
            ("num_layers", num_layers, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(
                    f"vector encoder: {arg} must be an integer >= {low}, got {value!r}"
                )
        layers: list[nn.Module] = [nn.Linear(input_dim, hidden_dim), nn.ReLU()]
        for _ in range(num_layers):
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
        layers.append(nn.Linear(hidden_dim, output_dim))
        self.net = nn.Sequential(*layers)
        self.input_dim = input_dim
        self.feature_dim = output_dim
        self.local_dim = 0

    def forward(self, x: Tensor) -> Tensor:
        """Features ``(N, output_dim)`` of vectors ``(N, input_dim)``."""
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.input_dim:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"vector encoder expects inputs of shape (N, {self.input_dim}), got {shape}"
            )
        return self.net(x)  # type: ignore[no-any-return]
