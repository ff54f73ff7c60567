"""The promises every registered objective keeps, as named checks.

:func:`objective_checks` yields ``(name, check)`` pairs for one registered
objective: it builds with default arguments, gives a finite scalar loss and
scalar logs, reaches every trainable parameter with a gradient, is deterministic
under a seed, moves with ``.to()``, survives a ``state_dict`` round trip, rejects
a batch without what it declares and uses all of it, and has a joint embedding.
A check raises (usually ``AssertionError``) with the broken promise as message.

Example:
    >>> from lightly_mm_plugins.testing.objective_checks import objective_checks
    >>> callable(objective_checks)
    True
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from ..api import EncodedBatch, Objective, joint_embedding_problem
from ..registry import Entry
from .batches import build_objective, random_batch

__all__ = ["objective_checks"]


def _loss_of(obj: Objective, batch: EncodedBatch) -> tuple[Tensor, dict[str, Tensor]]:
    out = obj(batch)
    return out.loss, out.logs


def _loss_changes(obj: Any, part: str) -> bool:
    """Whether ``obj``'s loss (same seed) changes when ``part`` of a batch is perturbed."""
    base = random_batch(obj, seed=8)
    changed = _perturb(random_batch(obj, seed=8), part)
    torch.manual_seed(9)
    l0 = _loss_of(obj, base)[0]
    torch.manual_seed(9)
    l1 = _loss_of(obj, changed)[0]
    return not torch.allclose(l0, l1)


def _perturb(batch: EncodedBatch, part: str) -> EncodedBatch:
    if part == "momentum" and batch.momentum is not None:
        batch.momentum = {m: t.flip(0) for m, t in batch.momentum.items()}
    elif part == "local" and batch.local is not None:
        batch.local = {m: t.flip(0) for m, t in batch.local.items()}
        if batch.momentum_local is not None:
            batch.momentum_local = {m: t.flip(0) for m, t in batch.momentum_local.items()}
    elif part == "labels" and batch.labels is not None:
        batch.labels = (batch.labels + 1) % 3
    elif part == "pseudo_labels":
        # One group (no negative removed) instead of the alternating two groups.
        batch.pseudo_labels = torch.zeros(batch.batch_size, dtype=torch.long)
    elif part.startswith("view "):
        # The second observation, online and momentum (TCL reads view 2 through the EMA
        # encoder), global and local: shuffled across instances.
        def shuffled(parts: dict[str, Tensor] | None) -> dict[str, Tensor] | None:
            if parts is None:
                return None
            out = {m: t.clone() for m, t in parts.items()}
            for t in out.values():
                if t.shape[1] > 1:
                    t[:, 1] = t[:, 1].flip(0)
            return out

        batch.embeddings = shuffled(batch.embeddings) or {}
        batch.momentum = shuffled(batch.momentum)
        batch.local = shuffled(batch.local)
        batch.momentum_local = shuffled(batch.momentum_local)
    return batch


def objective_checks(entry: Entry) -> Iterator[tuple[str, Callable[[], None]]]:
    """``(name, check)`` pairs for the objective registered as ``entry``."""
    state: dict[str, Any] = {}

    def builds() -> None:
        state["obj"] = build_objective(entry)

    def finite_scalar_loss_and_logs() -> None:
        obj = state["obj"]
        loss, logs = _loss_of(obj, random_batch(obj))
        assert loss.dim() == 0, f"loss must be a scalar, got shape {tuple(loss.shape)}"
        assert torch.isfinite(loss), f"loss is not finite: {loss.item()}"
        for key, value in logs.items():
            assert isinstance(key, str) and key, "log names must be non-empty strings"
            assert torch.as_tensor(value).numel() == 1, f"log {key!r} is not a scalar"

    def gradients_reach_every_parameter() -> None:
        obj = build_objective(entry)
        batch = random_batch(obj)
        for m in batch.embeddings:
            batch.embeddings[m].requires_grad_(True)
        loss, _ = _loss_of(obj, batch)
        loss.backward()
        aux = {id(p) for p in obj.auxiliary_parameters()}
        for m, e in batch.embeddings.items():
            assert e.grad is not None and e.grad.abs().sum() > 0, (
                f"no gradient reaches the {m!r} embeddings"
            )
        missing = [
            n
            for n, p in obj.named_parameters()
            if p.requires_grad and id(p) not in aux and (p.grad is None)
        ]
        assert not missing, f"parameters without gradient from the loss: {missing}"
        if aux:
            obj.zero_grad(set_to_none=True)
            obj.auxiliary_loss(random_batch(obj)).backward()
            no_aux = [
                n
                for n, p in obj.named_parameters()
                if id(p) in aux and p.requires_grad and p.grad is None
            ]
            assert not no_aux, f"auxiliary parameters without gradient: {no_aux}"

    def deterministic_under_seed() -> None:
        import random

        values = []
        for _ in range(2):
            obj = build_objective(entry, seed=1)
            torch.manual_seed(2)
            random.seed(2)
            values.append(_loss_of(obj, random_batch(obj, seed=3))[0].item())
        assert values[0] == values[1], f"two seeded runs differ: {values}"

    def moves_with_to() -> None:
        obj = build_objective(entry).to(torch.float64)
        loss, _ = _loss_of(obj, random_batch(obj, dtype=torch.float64))
        assert loss.dtype == torch.float64, f"loss dtype after .to(float64) is {loss.dtype}"
        assert torch.isfinite(loss)

    def state_dict_round_trip() -> None:
        a = build_objective(entry, seed=4)
        b = build_objective(entry, seed=5)
        buf = io.BytesIO()
        torch.save(a.state_dict(), buf)
        buf.seek(0)
        b.load_state_dict(torch.load(buf, weights_only=True))
        a.eval()
        b.eval()
        batch = random_batch(a, seed=6)
        torch.manual_seed(7)
        la = _loss_of(a, copy.deepcopy(batch))[0]
        torch.manual_seed(7)
        lb = _loss_of(b, copy.deepcopy(batch))[0]
        assert torch.allclose(la, lb, atol=1e-6), (
            f"loss differs after a state_dict round trip: {la.item()} vs {lb.item()}"
        )

    def rejects_what_it_lacks() -> None:
        obj = state["obj"]
        req = obj.requirements
        for part, needed in (
            ("momentum", req.momentum),
            ("local", req.local_features),
            ("labels", req.labels),
        ):
            if not needed:
                continue
            try:
                _loss_of(obj, random_batch(obj, drop=(part,)))
            except (ValueError, KeyError, TypeError) as exc:
                assert str(exc), f"error for a batch without {part} has no message"
            else:
                raise AssertionError(f"declares it needs {part} but accepted a batch without it")
            assert _loss_changes(obj, part), (
                f"declares it needs {part} but never uses {part}: the loss ignores it"
            )
        uses = [("pseudo_labels", req.pseudo_labels)]
        uses.append(
            ("view 2", any(req.views_needed(m) > 1 for m in obj.modalities) and not req.multifold)
        )
        for part, declared in uses:
            if not declared:
                continue
            what = (
                "pseudo_labels (requirements.pseudo_labels) but ignores them: the loss is "
                "the same when every instance shares one pseudo label"
                if part == "pseudo_labels"
                else "min_views >= 2 but never uses the second view: the loss ignores it"
            )
            assert _loss_changes(obj, part), f"declares {what}"
        try:
            _loss_of(obj, random_batch(obj, batch_size=1))
        except ValueError:
            pass
        else:
            raise AssertionError("accepted a batch of one instance (no negatives)")

    def joint_embedding_is_found() -> None:
        problem = joint_embedding_problem(state["obj"])
        assert problem is None, problem

    yield "builds with default arguments", builds
    yield "finite scalar loss and scalar logs", finite_scalar_loss_and_logs
    yield "gradients reach every trainable parameter", gradients_reach_every_parameter
    yield "deterministic under a fixed seed", deterministic_under_seed
    yield "moves to float64 with .to()", moves_with_to
    yield "state_dict round trip", state_dict_round_trip
    yield "declares what it needs (and uses it)", rejects_what_it_lacks
    yield "joint embedding found by the pipeline", joint_embedding_is_found
