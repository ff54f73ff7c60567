"""Load a user's weights file into an encoder: safetensors or a ``weights_only`` state dict.

Weights only ever come from the user (``--image-weights PATH``,
``--text-weights PATH``, ``weights_path=`` in Python); nothing is downloaded.
Two formats are read:

* ``*.safetensors`` (``safetensors.torch.load_file``): tensors only, no code;
* anything else with ``torch.load(path, weights_only=True)``: a plain state
  dict, or one under a ``"state_dict"`` / ``"model"`` / ``"module"`` key (Lightning,
  timm and open_clip training scripts save them so).

The keys may carry a prefix naming the part of a larger model the encoder is
(``backbone.`` for our torchvision encoders, ``visual.`` for an open_clip image
tower saved with the whole CLIP model, ``module.`` from DDP): every prefix in
``prefixes`` is tried and the keys starting with it are used. A file whose keys
do not fit is a ``ValueError`` listing missing / unexpected keys and shape
mismatches, never a silent partial load.

Example:
    >>> import torch, tempfile, os
    >>> lin = torch.nn.Linear(2, 3)
    >>> path = os.path.join(tempfile.mkdtemp(), "w.pt")
    >>> torch.save({"state_dict": lin.state_dict()}, path)
    >>> load_weights(torch.nn.Linear(2, 3), path)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["load_weights", "read_state_dict"]

_WRAPPER_KEYS = ("state_dict", "model", "module")


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The name -> tensor mapping in ``path`` (safetensors or ``torch.load(weights_only=True)``).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the
    fix for anything that is not a state dict (a pickled model, a truncated file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    state: object
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:  # pragma: no cover - a dependency of the host
            raise ValueError("reading .safetensors needs the package safetensors") from exc
        try:
            state = load_file(str(path), device="cpu")
        except Exception as exc:
            raise ValueError(f"cannot read safetensors file {str(path)!r} ({exc})") from exc
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unpickling failure means "not a plain state dict"
            raise ValueError(
                f"cannot read weights from {str(path)!r} with weights_only=True ({exc}); "
                "save a plain state dict: torch.save(model.state_dict(), path), or a "
                ".safetensors file"
            ) from exc
    for key in _WRAPPER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if (
        not isinstance(state, Mapping)
        or not state
        or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items())
    ):
        raise ValueError(
            f"{str(path)!r} does not hold a state dict (name -> tensor); "
            "save one with torch.save(model.state_dict(), path)"
        )
    return dict(state)


def _strip(
    state: Mapping[str, Tensor], own: set[str], prefixes: Sequence[str]
) -> dict[str, Tensor]:
    """The keys of ``state`` under the prefix that fits ``own`` best ('' = as they are)."""
    best = dict(state)
    best_hits = len(own & set(state))
    for prefix in prefixes:
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        hits = len(own & set(sub))
        if hits > best_hits:
            best, best_hits = sub, hits
    return best


def load_weights(
    module: nn.Module,
    path: str | os.PathLike[str],
    what: str = "the encoder",
    *,
    prefixes: Sequence[str] = ("backbone.", "module."),
    convert: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
) -> None:
    """Load the state dict in ``path`` into ``module``, or raise a ``ValueError`` saying why.

    Args:
        module: The module to fill (all of its keys must be in the file).
        path: A ``.safetensors`` file or a ``torch.save``'d state dict.
        what: How error messages name the module.
        prefixes: Key prefixes to strip (the one matching most of ``module``'s keys wins).
        convert: Optional rewrite of the file's keys before matching (e.g. open_clip's
            CLIP -> custom-text layout).
    """
    state = read_state_dict(path)
    if convert is not None:
        state = convert(state)
    own_state = module.state_dict()
    state = _strip(state, set(own_state), prefixes)
    missing = sorted(set(own_state) - set(state))
    unexpected = sorted(set(state) - set(own_state))
    wrong = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(own_state[k].shape)}"
        for k in set(own_state) & set(state)
        if state[k].shape != own_state[k].shape
    )
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches (file vs model)", wrong),
        ):
            if keys:
                more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
                parts.append(f"{len(keys)} {label}: {', '.join(keys[:3])}{more}")
        raise ValueError(
            f"weights in {str(path)!r} do not fit {what}: {'; '.join(parts)}. "
            "Pass weights saved from the same encoder name, configuration and image size."
        )
    module.load_state_dict(state)
