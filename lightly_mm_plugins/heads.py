"""Projection heads shared by objectives, built on Lightly's ``ProjectionHead``.

Example:
    >>> import torch
    >>> from lightly_mm_plugins.heads import build_projection
    >>> head = build_projection(384, 128, hidden_dim=256, num_layers=2)
    >>> head(torch.randn(4, 384)).shape
    torch.Size([4, 128])
"""

from __future__ import annotations

from torch import nn


def build_projection(
    input_dim: int,
    output_dim: int,
    hidden_dim: int | None = None,
    num_layers: int = 1,
    batch_norm: bool = False,
) -> nn.Module:
    """A linear (``num_layers=1``) or MLP projection head.

    ``num_layers`` Linear layers with ReLU (and optional BatchNorm) between
    them, as Lightly's ``ProjectionHead`` blocks ``(in, out, norm, act)``.
    """
    from lightly.models.modules.heads import ProjectionHead

    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if input_dim < 1 or output_dim < 1:
        raise ValueError(f"head sizes must be positive, got {input_dim} -> {output_dim}")
    hidden = hidden_dim or max(input_dim, output_dim)
    blocks: list[tuple[int, int, nn.Module | None, nn.Module | None]] = []
    dim = input_dim
    for _ in range(num_layers - 1):
        norm = nn.BatchNorm1d(hidden) if batch_norm else None
        blocks.append((dim, hidden, norm, nn.ReLU()))
        dim = hidden
    blocks.append((dim, output_dim, None, None))
    return ProjectionHead(blocks)  # type: ignore[no-any-return]


def linear_head(input_dim: int, output_dim: int, **kwargs: object) -> nn.Module:
    """Registered as head ``linear``."""
    return build_projection(input_dim, output_dim, num_layers=1)


def mlp_head(
    input_dim: int, output_dim: int, hidden_dim: int | None = None, num_layers: int = 2
) -> nn.Module:
    """Registered as head ``mlp`` (SimCLR-style, ReLU between Linear layers)."""
    return build_projection(input_dim, output_dim, hidden_dim=hidden_dim, num_layers=num_layers)
