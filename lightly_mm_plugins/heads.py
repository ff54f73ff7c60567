"""Projection heads shared by objectives, built on Lightly's ``ProjectionHead``.

Example:
    >>> import torch
    >>> from lightly_mm_plugins.heads import build_projection
    >>> head = build_projection(384, 128, hidden_dim=256, num_layers=2)
    >>> head(torch.randn(4, 384)).shape
    torch.Size([4, 128])
"""

from __future__ import annotations

from collections.abc import Mapping

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


def modality_heads(
    input_dims: Mapping[str, int],
    output_dim: int,
    *,
    head: str | None = None,
    num_layers: int = 1,
    hidden_dim: int | None = None,
    batch_norm: bool = False,
) -> nn.ModuleDict:
    """One projection head per modality into a shared ``output_dim`` space.

    The per-modality heads of every CLIP-style objective (clip, mxm-clr, cct, tcl):
    ``heads[m]`` maps modality ``m``'s ``(..., input_dims[m])`` embeddings to
    ``(..., output_dim)``. With ``head=None`` each is :func:`build_projection`
    (``num_layers`` Linear layers); with ``head="<name>"`` each is the head
    registered under that name (``register_heads`` hook; built-in ``linear`` and
    ``mlp``), built as ``factory(input_dim=..., output_dim=...)``, so
    ``--method-args head=mlp`` swaps the heads of any of these objectives.

    Example:
        >>> heads = modality_heads({"image": 16, "text": 8}, 4)
        >>> sorted(heads), heads["text"](torch.randn(2, 8)).shape
        (['image', 'text'], torch.Size([2, 4]))
    """

    def one(input_dim: int) -> nn.Module:
        if head is None:
            return build_projection(
                input_dim,
                output_dim,
                hidden_dim=hidden_dim,
                num_layers=num_layers,
                batch_norm=batch_norm,
            )
        from . import create_head

        return create_head(head, input_dim=input_dim, output_dim=output_dim)  # type: ignore[no-any-return]

    return nn.ModuleDict({m: one(d) for m, d in input_dims.items()})
