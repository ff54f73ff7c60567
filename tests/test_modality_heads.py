"""modality_heads: the one per-modality projection block, heads chosen by registered name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightly_mm_plugins.heads import modality_heads


def test_default_heads_are_linear_projections() -> None:
    heads = modality_heads({"image": 16, "text": 8}, 4)
    assert isinstance(heads, nn.ModuleDict) and sorted(heads) == ["image", "text"]
    assert heads["image"](torch.randn(3, 16)).shape == (3, 4)
    assert sum(isinstance(m, nn.Linear) for m in heads["text"].modules()) == 1


@pytest.mark.parametrize("objective", ["clip", "mxm-clr", "cct", "tcl"])
def test_head_by_registered_name_swaps_every_objectives_heads(objective: str) -> None:
    import lightly_mm_plugins as lmm

    dims = {"image": 16, "text": 8}
    linear = lmm.create_objective(objective, embedding_dims=dims)
    mlp = lmm.create_objective(objective, embedding_dims=dims, head="mlp")
    for m in ("image", "text"):
        n_linear = sum(isinstance(x, nn.Linear) for x in linear.heads[m].modules())
        n_mlp = sum(isinstance(x, nn.Linear) for x in mlp.heads[m].modules())
        relu = any(isinstance(x, nn.ReLU) for x in mlp.heads[m].modules())
        assert (n_linear, n_mlp, relu) == (
            1 if objective != "cct" else 2,  # cct's default: the MoCo-v2 MLP
            2,
            True,
        )


def test_unknown_head_name_is_a_clear_error() -> None:
    from lightly_mm_plugins.errors import UnknownComponentError

    with pytest.raises(UnknownComponentError, match="mlpp"):
        modality_heads({"image": 4}, 2, head="mlpp")
