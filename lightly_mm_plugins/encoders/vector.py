"""MLP encoder for vector modalities (FactorCL's backbone: ``mlp(100, 512, 128, layers=2)``)."""

from __future__ import annotations

from torch import Tensor, nn

from ..api import Encoder


class VectorEncoder(Encoder):
    """``Linear(d, h), ReLU, [Linear(h, h), ReLU] x num_layers, Linear(h, out)``.

    Example:
        >>> import torch
        >>> VectorEncoder(100)(torch.randn(4, 100)).shape
        torch.Size([4, 128])
    """

    def __init__(
        self, input_dim: int, hidden_dim: int = 512, output_dim: int = 128, num_layers: int = 2
    ) -> None:
        super().__init__()
        if input_dim < 1:
            raise ValueError(f"input_dim must be positive, got {input_dim}")
        layers: list[nn.Module] = [nn.Linear(input_dim, hidden_dim), nn.ReLU()]
        for _ in range(num_layers):
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
        layers.append(nn.Linear(hidden_dim, output_dim))
        self.net = nn.Sequential(*layers)
        self.feature_dim = self.local_dim = output_dim

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2:
            raise ValueError(f"vector encoder expects (N, D) inputs, got {tuple(x.shape)}")
        return self.net(x)  # type: ignore[no-any-return]
