"""Conformance kit: the promises every plugin keeps, as reusable checks.

Point it at your plugin's distribution (or entry-point) name from your own
tests::

    from lightly_mm_plugins.testing import assert_plugin_conforms

    def test_my_plugin_conforms():
        assert_plugin_conforms("lightly-mm-myloss")

or enable the pytest fixtures with ``pytest_plugins = ["lightly_mm_plugins.testing"]``
(``lightly_mm_host``: an isolated strict host of installed plugins).

Checks (each failure names the promise that was broken):

* the entry point loads, its hooks validate, and it registers something;
* every objective builds with default arguments, returns a finite scalar loss
  and scalar logs on a small random batch of what it declares, reaches every
  trainable parameter with a gradient (auxiliary parameters through
  ``auxiliary_loss``), is deterministic under a fixed seed, moves to float64
  with ``.to()``, survives a ``state_dict`` round trip, rejects a batch
  that lacks what its ``Requirements`` declare, and *uses* everything it
  declares (momentum, local features, labels, pseudo labels, a second view:
  changing it changes the loss);
* every objective's joint embedding (cross-modal retrieval) is found by the
  pipeline (:func:`lightly_mm_plugins.api.joint_embedding_problem`), unless it
  declares ``joint_space = False``;
* every encoder builds for each modality kind it declares and gives
  ``(N, feature_dim)`` features (and local features where it says so);
* every view produces, per modality, the number of observations it declares;
* every stage scheduler has consistent stages and a state that survives
  ``torch.save`` / ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .api import EncodedBatch, Objective, Sample, StageScheduler, View, joint_embedding_problem
from .manager import PluginHost, normalize_dist
from .registry import Entry

#: Embedding sizes the kit builds objectives for.
EMBEDDING_DIMS: dict[str, int] = {"image": 24, "text": 16}
#: Local features per observation (a 4x4 grid of cells / 16 tokens).
NUM_LOCAL = 16


@dataclass
class CheckResult:
    """One check of one component: passed, or the broken promise."""

    kind: str
    name: str
    check: str
    ok: bool
    message: str = ""

    def __str__(self) -> str:
        state = "ok" if self.ok else f"BROKEN: {self.message}"
        return f"{self.kind} {self.name!r} / {self.check}: {state}"


def random_batch(
    objective: Objective,
    batch_size: int = 8,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    drop: tuple[str, ...] = (),
) -> EncodedBatch:
    """A random :class:`EncodedBatch` with everything ``objective`` declares.

    ``drop`` names parts to leave out (``momentum``, ``local``, ``labels``) to
    check that the objective notices.
    """
    req = objective.requirements
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g).to(dtype)

    emb = {
        m: randn(
            batch_size,
            max(req.views_needed(m), 3 if req.multifold else 1),
            objective.embedding_dims[m],
        )
        for m in objective.modalities
    }
    masks = {m: torch.ones(e.shape[:2], dtype=torch.bool) for m, e in emb.items()}
    if req.multifold:
        for m in masks:
            masks[m][0, -1] = False  # one padded fold
            emb[m][0, -1] = 0
    momentum = local = local_masks = momentum_local = None
    if req.momentum and "momentum" not in drop:
        momentum = {m: randn(*e.shape) for m, e in emb.items()}
    if req.local_features and "local" not in drop:
        local = {m: randn(*e.shape[:2], NUM_LOCAL, e.shape[-1]) for m, e in emb.items()}
        local_masks = {
            m: torch.ones(*e.shape[:2], NUM_LOCAL, dtype=torch.bool) for m, e in emb.items()
        }
        momentum_local = {m: randn(*t.shape) for m, t in local.items()}
    labels = None
    if "labels" not in drop:
        labels = torch.randint(0, 3, (batch_size,), generator=g)
    return EncodedBatch(
        embeddings=emb,
        masks=masks,
        instance_ids=torch.arange(batch_size),
        labels=labels,
        momentum=momentum,
        local=local,
        local_masks=local_masks,
        momentum_local=momentum_local,
        pseudo_labels=torch.tensor([i % 2 for i in range(batch_size)])
        if req.pseudo_labels
        else None,
    )


def objective_kwargs(entry: Entry) -> dict[str, Any]:
    """What the pipeline passes a factory: sizes, modalities, and local sizes if accepted."""
    import inspect

    kwargs: dict[str, Any] = {
        "embedding_dims": dict(EMBEDDING_DIMS),
        "modalities": tuple(EMBEDDING_DIMS),
    }
    try:
        params = inspect.signature(entry.resolve()).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    if "local_dims" in params:
        kwargs["local_dims"] = dict(EMBEDDING_DIMS)
    return kwargs


def build_objective(entry: Entry, seed: int = 0) -> Objective:
    torch.manual_seed(seed)
    obj = entry.create(**objective_kwargs(entry))
    if not isinstance(obj, Objective):
        raise TypeError(f"factory returned {type(obj).__name__}, not an api.Objective")
    return obj


def _loss_of(obj: Objective, batch: EncodedBatch) -> tuple[Tensor, dict[str, Tensor]]:
    out = obj(batch)
    return out.loss, out.logs


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


def _objective_checks(entry: Entry) -> Iterator[tuple[str, Callable[[], None]]]:
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
            base = random_batch(obj, seed=8)
            changed = _perturb(random_batch(obj, seed=8), part)
            torch.manual_seed(9)
            l0 = _loss_of(obj, base)[0]
            torch.manual_seed(9)
            l1 = _loss_of(obj, changed)[0]
            assert not torch.allclose(l0, l1), (
                f"declares it needs {part} but never uses {part}: the loss ignores it"
            )
        uses = [("pseudo_labels", req.pseudo_labels)]
        uses.append(
            ("view 2", any(req.views_needed(m) > 1 for m in obj.modalities) and not req.multifold)
        )
        for part, declared in uses:
            if not declared:
                continue
            base = random_batch(obj, seed=8)
            changed = _perturb(random_batch(obj, seed=8), part)
            torch.manual_seed(9)
            l0 = _loss_of(obj, base)[0]
            torch.manual_seed(9)
            l1 = _loss_of(obj, changed)[0]
            what = (
                "pseudo_labels (requirements.pseudo_labels) but ignores them: the loss is "
                "the same when every instance shares one pseudo label"
                if part == "pseudo_labels"
                else "min_views >= 2 but never uses the second view: the loss ignores it"
            )
            assert not torch.allclose(l0, l1), f"declares {what}"
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


def _fake_sample(kinds: Mapping[str, str], folds: int = 4) -> Sample:
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


def _view_checks(entry: Entry) -> Iterator[tuple[str, Callable[[], None]]]:
    kinds = {"image": "image", "text": "text"}

    def produces_what_it_declares() -> None:
        view = entry.create(modalities=dict(kinds), image_size=16)
        assert isinstance(view, View), f"factory returned {type(view).__name__}, not a View"
        out = view(_fake_sample(kinds))
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
        ev = view.eval_view(_fake_sample(kinds))
        assert set(ev.observations) >= set(view.views_per_modality), "eval_view drops modalities"

    yield "produces what it declares", produces_what_it_declares


def _scheduler_checks(entry: Entry) -> Iterator[tuple[str, Callable[[], None]]]:
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


def _encoder_checks(entry: Entry) -> Iterator[tuple[str, Callable[[], None]]]:
    from .api import Encoder

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


_CHECKS = {
    "objectives": _objective_checks,
    "views": _view_checks,
    "stage_schedulers": _scheduler_checks,
    "encoders": _encoder_checks,
}


def check_plugin(plugin: str, host: PluginHost | None = None) -> list[CheckResult]:
    """Run every check on what ``plugin`` (distribution or entry-point name) registers."""
    host = host or PluginHost(strict=False)
    wanted = normalize_dist(plugin)
    infos = [
        i
        for i in host.plugins()
        if wanted in (normalize_dist(i.name), normalize_dist(i.distribution))
    ]
    results: list[CheckResult] = []
    if not infos:
        return [CheckResult("plugin", plugin, "is installed", False, "no such plugin found")]
    info = infos[0]
    loaded = info.status in ("active", "builtin")
    results.append(
        CheckResult(
            "plugin",
            plugin,
            "entry point loads and validates",
            loaded,
            "; ".join(f.summary() for f in info.failures) or info.reason,
        )
    )
    if not loaded:
        return results
    results.append(
        CheckResult(
            "plugin", plugin, "registers something", bool(info.provides), "registered nothing"
        )
    )
    for kind, names in info.provides.items():
        for name in names:
            entry = host.registry(kind).get(name)
            for check_name, fn in _CHECKS.get(kind, lambda e: iter(()))(entry):
                try:
                    fn()
                except Exception as exc:
                    results.append(
                        CheckResult(kind, name, check_name, False, f"{type(exc).__name__}: {exc}")
                    )
                    if check_name.startswith("builds"):
                        break
                else:
                    results.append(CheckResult(kind, name, check_name, True))
    return results


def assert_plugin_conforms(plugin: str, host: PluginHost | None = None) -> list[CheckResult]:
    """Raise ``AssertionError`` listing every broken promise of ``plugin``."""
    results = check_plugin(plugin, host)
    broken = [r for r in results if not r.ok]
    if broken:
        raise AssertionError(
            f"plugin {plugin!r} breaks {len(broken)} promise(s):\n"
            + "\n".join(f"  - {r}" for r in broken)
        )
    return results


try:  # pytest fixtures when used as ``pytest_plugins = ["lightly_mm_plugins.testing"]``
    import pytest

    @pytest.fixture
    def lightly_mm_host() -> PluginHost:
        """A fresh, strict host over the installed plugins."""
        return PluginHost(strict=True)

except ImportError:  # pragma: no cover - pytest is optional at run time
    pass
