"""The promises every registered view, stage scheduler and encoder keeps, as named checks.

Each ``*_checks(entry)`` yields ``(name, check)`` pairs; a check raises with the
broken promise as message. Views produce the observations they declare,
schedulers have consistent stages and a state that survives
``torch.load(weights_only=True)``, encoders build for every declared modality
and give ``(N, feature_dim)`` features.

Example:
    >>> from lightly_mm_plugins.testing.component_checks import fake_sample
    >>> sorted(fake_sample({"image": "image", "text": "text"}).observations)
    ['image', 'text']
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from ..api import Sample, StageScheduler, View
from ..registry import Entry

__all__ = ["encoder_checks", "fake_sample", "scheduler_checks", "view_checks"]


def fake_sample(kinds: Mapping[str, str], folds: int = 4) -> Sample:
    """A :class:`Sample` with ``folds`` observations of each modality kind (image/text/vector)."""
    from PIL import Image

    obs: dict[str, list[Any]] = {}
    for m, kind in kinds.items():
        if kind == "image":
            obs[m] = [Image.new("RGB", (20, 20), (40 * i, 80, 120)) for i in range(folds)]
        elif kind == "text":
            obs[m] = [f"a caption number {i} about a thing" for i in range(folds)]
        else:
            obs[m] = [torch.randn(12) for _ in range(folds)]
    return Sample(instance_id=3, observations=obs, label=1)


def view_checks(entry: Entry) -> Iterator[tuple[str, Callable[[], None]]]:
    """``(name, check)`` pairs for the view registered as ``entry``."""
    kinds = {"image": "image", "text": "text"}

    def produces_what_it_declares() -> None:
        view = entry.create(modalities=dict(kinds), image_size=16)
        assert isinstance(view, View), f"factory returned {type(view).__name__}, not a View"
        out = view(fake_sample(kinds))
        for m, k in view.views_per_modality.items():
            assert m in out.observations, f"declared modality {m!r} missing from the output"
            got = len(out.observations[m])
            if k is not None:
                assert got == k, f"declares {k} observations of {m!r}, produced {got}"
        for m, obs in out.observations.items():
            if kinds.get(m) == "image":
                for o in obs:
                    assert isinstance(o, Tensor) and o.shape[-2:] == (16, 16), (
                        f"{m!r} images must be (C, 16, 16) tensors for image_size=16"
                    )
        ev = view.eval_view(fake_sample(kinds))
        assert set(ev.observations) >= set(view.views_per_modality), "eval_view drops modalities"

    yield "produces what it declares", produces_what_it_declares


def scheduler_checks(entry: Entry) -> Iterator[tuple[str, Callable[[], None]]]:
    """``(name, check)`` pairs for the stage scheduler registered as ``entry``."""

    def consistent_stages() -> None:
        sched = entry.create(epochs=2)
        assert isinstance(sched, StageScheduler), "factory must return an api.StageScheduler"
        n = sched.num_stages()
        assert isinstance(n, int) and n >= 1, f"num_stages() must be >= 1, got {n}"
        for s in range(n):
            plan = sched.plan(s)
            assert plan.epochs >= 1, f"stage {s} has {plan.epochs} epochs"
        feats = [torch.randn(4, 3) for _ in range(n)]
        combined = sched.combine(feats)
        assert combined.shape[0] == 4, "combine() must keep one row per instance"

    def state_round_trip() -> None:
        sched = entry.create(epochs=2)
        buf = io.BytesIO()
        torch.save(sched.state_dict(), buf)
        buf.seek(0)
        sched.load_state_dict(torch.load(buf, weights_only=True))

    yield "consistent stages", consistent_stages
    yield "state survives torch.load(weights_only=True)", state_round_trip


def encoder_checks(entry: Entry) -> Iterator[tuple[str, Callable[[], None]]]:
    """``(name, check)`` pairs for the encoder registered as ``entry``."""
    from ..api import Encoder

    def builds_and_encodes() -> None:
        kinds = entry.metadata.get("modalities")
        assert kinds and all(k in ("image", "text", "vector") for k in kinds), (
            "register the encoder with modalities=(...) naming image, text and/or vector"
        )
        model = entry.metadata.get("default_model")
        if entry.metadata.get("takes_model"):
            model = entry.metadata.get("example_model")
            if not model:
                return  # a family: nothing to build without a model name
        inputs: dict[str, tuple[dict[str, Any], Any]] = {
            "image": ({"image_size": 32}, torch.randn(2, 3, 32, 32)),
            "text": ({"trainable": False}, ["a caption", "another one"]),
            "vector": ({"input_dim": 12}, torch.randn(2, 12)),
        }
        for kind in kinds:
            kwargs, x = inputs[kind]
            enc = entry.resolve()(kind=kind, model=model, **kwargs)
            assert isinstance(enc, Encoder), f"built a {type(enc).__name__}, not an api.Encoder"
            out = enc.eval()(x)
            assert tuple(out.shape) == (2, enc.feature_dim), (
                f"{kind}: features of shape {tuple(out.shape)}, feature_dim {enc.feature_dim}"
            )
            if enc.supports_local:
                _, local, mask = enc.forward_local(x)
                assert local.dim() == 3 and mask.shape == local.shape[:2], (
                    f"{kind}: local features {tuple(local.shape)} with mask {tuple(mask.shape)}"
                )

    yield "builds and encodes each declared modality", builds_and_encodes
