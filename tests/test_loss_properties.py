"""Property-based numerical robustness of every registered objective (hypothesis).

For each objective the host has registered (so a newly installed plugin is covered):

* finite loss and finite gradients w.r.t. every embedding for extreme but valid
  inputs: near-duplicate rows (all instances equal up to 1e-6), tiny (1e-4) and
  large (1e3) norms, batch sizes 2..8;
* finite loss and gradients for temperatures 0.01..10 where the factory takes one;
* invariance to a joint permutation of the batch's instances (float64), for
  objectives whose loss is a symmetric function of the instances; TCL is excluded
  because each call pushes the batch into its queue and updates momentum heads,
  so a second call sees different state;
* bf16 autocast on CPU gives a finite loss close to float32 for the objectives
  whose loss is similarity + log-softmax (not FactorCL's MLP critics).

Examples are derandomised (CI is deterministic) and few (the suite stays fast).
"""

from __future__ import annotations

import inspect
from dataclasses import fields, replace
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lightly_mm_plugins as lmm
from lightly_mm_plugins.api import EncodedBatch, Objective
from lightly_mm_plugins.testing import objective_kwargs, random_batch

HOST = lmm.get_host()
OBJECTIVES = sorted(HOST.registry("objectives").names())
STATEFUL = {"tcl"}  # queue + momentum heads change with every call
BF16 = {"clip", "cct", "mxm-clr", "mcl"}
SETTINGS = settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def build(name: str, **extra: Any) -> Objective:
    entry = HOST.registry("objectives").get(name)
    kwargs = objective_kwargs(entry)
    params = inspect.signature(entry.resolve()).parameters
    if "critic_hidden_dim" in params:
        kwargs["critic_hidden_dim"] = 32  # FactorCL: small critics keep the suite fast
    kwargs.update({k: v for k, v in extra.items() if k in params})
    torch.manual_seed(0)
    return entry.create(**kwargs)


def tensor_fields(batch: EncodedBatch) -> list[str]:
    return [f.name for f in fields(batch) if getattr(batch, f.name) is not None]


def map_embeddings(batch: EncodedBatch, fn) -> EncodedBatch:
    """Apply ``fn`` to every float embedding (global, momentum, local)."""
    changes = {}
    for name in ("embeddings", "momentum", "local", "momentum_local"):
        value = getattr(batch, name)
        if value is not None:
            changes[name] = {m: fn(t) for m, t in value.items()}
    return replace(batch, **changes)


def loss_and_grads(obj: Objective, batch: EncodedBatch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    leaves = {m: t.detach().clone().requires_grad_(True) for m, t in batch.embeddings.items()}
    out = obj(replace(batch, embeddings=leaves))
    out.loss.backward()
    return out.loss.detach(), [t.grad for t in leaves.values() if t.grad is not None]


def assert_finite(loss: torch.Tensor, grads: list[torch.Tensor], what: str) -> None:
    assert torch.isfinite(loss), f"{what}: loss {loss}"
    assert grads, f"{what}: no gradient reached the embeddings"
    for g in grads:
        assert torch.isfinite(g).all(), f"{what}: non-finite gradient"


@pytest.mark.parametrize("name", OBJECTIVES)
@SETTINGS
@given(
    n=st.integers(2, 8),
    seed=st.integers(0, 10_000),
    scale=st.sampled_from([1e-4, 1.0, 1e3]),
    near_duplicate=st.booleans(),
)
def test_finite_for_extreme_inputs(name, n, seed, scale, near_duplicate):
    obj = build(name)
    batch = random_batch(obj, batch_size=n, seed=seed)
    if near_duplicate:
        g = torch.Generator().manual_seed(seed)

        def dup(t: torch.Tensor) -> torch.Tensor:
            return t[:1].expand_as(t) + 1e-6 * torch.randn(t.shape, generator=g)

        batch = map_embeddings(batch, dup)
    batch = map_embeddings(batch, lambda t: t * scale)
    loss, grads = loss_and_grads(obj, batch)
    assert_finite(loss, grads, f"{name} n={n} scale={scale} dup={near_duplicate}")


TEMPERATURE_OBJECTIVES = [
    n
    for n in OBJECTIVES
    if "temperature" in inspect.signature(HOST.registry("objectives").get(n).resolve()).parameters
]


def test_temperature_objectives_are_found():
    """The temperature property must not silently cover nothing."""
    assert {"clip", "mxm-clr"} <= set(TEMPERATURE_OBJECTIVES)


@pytest.mark.parametrize("name", TEMPERATURE_OBJECTIVES)
@SETTINGS
@given(
    temperature=st.floats(0.01, 10.0),
    seed=st.integers(0, 10_000),
    scale=st.sampled_from([1.0, 1e3]),
)
def test_finite_for_every_temperature(name, temperature, seed, scale):
    # TCL clamps its learnable temperature to official bounds (0.001, 0.5): widen them.
    obj = build(name, temperature=temperature, temperature_bounds=(0.005, 20.0))
    batch = map_embeddings(random_batch(obj, batch_size=6, seed=seed), lambda t: t * scale)
    loss, grads = loss_and_grads(obj, batch)
    assert_finite(loss, grads, f"{name} temperature={temperature}")


def permute(batch: EncodedBatch, order: torch.Tensor) -> EncodedBatch:
    changes: dict[str, Any] = {}
    for name in tensor_fields(batch):
        value = getattr(batch, name)
        if isinstance(value, dict):
            changes[name] = {m: t[order] for m, t in value.items()}
        elif isinstance(value, torch.Tensor):
            changes[name] = value[order]
    return replace(batch, **changes)


@pytest.mark.parametrize("name", [n for n in OBJECTIVES if n not in STATEFUL])
@SETTINGS
@given(n=st.integers(2, 8), seed=st.integers(0, 10_000))
def test_loss_is_invariant_to_the_order_of_instances(name, n, seed):
    obj = build(name).double()
    batch = map_embeddings(random_batch(obj, batch_size=n, seed=seed), torch.Tensor.double)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    a = obj(batch).loss
    b = obj(permute(batch, order)).loss
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_permutation_property_can_fail():
    """A loss that weights instances by position is caught by the same comparison."""
    batch = random_batch(build("clip").double(), batch_size=4, seed=0)
    batch = map_embeddings(batch, torch.Tensor.double)

    def positional(b: EncodedBatch) -> torch.Tensor:
        e = b.embeddings["image"][:, 0]
        return (torch.arange(len(e), dtype=e.dtype) * e.sum(1)).sum()

    order = torch.tensor([1, 0, 2, 3])
    with pytest.raises(AssertionError):
        torch.testing.assert_close(positional(batch), positional(permute(batch, order)))


@pytest.mark.parametrize("name", [n for n in OBJECTIVES if n in BF16])
@SETTINGS
@given(seed=st.integers(0, 10_000))
def test_bf16_autocast_is_finite_and_close_to_float32(name, seed):
    obj = build(name)
    batch = random_batch(obj, batch_size=8, seed=seed)
    full = obj(batch).loss.detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = obj(batch).loss.detach().float()
    assert torch.isfinite(half)
    assert abs(float(half - full)) <= 0.05 * max(1.0, abs(float(full))), (name, full, half)
