"""Tests of FactorCL's concat critic and its two bounds (InfoNCE, NCE-CLUB)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lightly_mm_factorcl.critics import ConcatCritic, tiled_pairwise_scores
from lightly_mm_factorcl.loss import InfoNCEBound, NCECLUBBound

torch.set_num_threads(1)


# ---------------------------------------------------------------- references
def _set_tiny_weights(critic: ConcatCritic) -> None:
    """Fixed, distinct, small weights (no randomness) for hand-computed cases."""
    with torch.no_grad():
        for k, p in enumerate(critic.parameters()):
            n = p.numel()
            values = [0.3 * math.sin(1.7 * (i + 1) + 0.9 * k) for i in range(n)]
            p.copy_(torch.tensor(values, dtype=p.dtype).reshape(p.shape))


def _mlp_by_loops(critic: ConcatCritic, z: list[float]) -> float:
    """The critic MLP on one concatenated input, with explicit Python loops."""
    act = (lambda v: max(v, 0.0)) if critic.activation == "relu" else math.tanh
    layers = [critic.input, *critic.hidden, critic.output]
    h = list(z)
    for depth, layer in enumerate(layers):
        w = layer.weight.detach().tolist()
        b = layer.bias.detach().tolist()
        out = []
        for r in range(len(w)):
            s = b[r]
            for c in range(len(h)):
                s += w[r][c] * h[c]
            out.append(s)
        h = out if depth == len(layers) - 1 else [act(v) for v in out]
    return h[0]


def _ref_nce(critic: ConcatCritic, x: list[list[float]], y: list[list[float]]) -> float:
    """I_NCE with f(x_j, y_i): anchors y_i, negatives x_j (official InfoNCECritic)."""
    n = len(x)
    total_joint, total_lse = 0.0, 0.0
    for i in range(n):
        total_joint += _mlp_by_loops(critic, x[i] + y[i])
        total_lse += math.log(sum(math.exp(_mlp_by_loops(critic, x[j] + y[i])) for j in range(n)))
    return total_joint / n - total_lse / n + math.log(n)


def _ref_club(critic: ConcatCritic, x: list[list[float]], y: list[list[float]]) -> float:
    """I_CLUB with g(y_i, x_j): input order [y, x] (official CLUBInfoNCECritic)."""
    n = len(x)
    joint = sum(_mlp_by_loops(critic, y[i] + x[i]) for i in range(n)) / n
    marginal = sum(_mlp_by_loops(critic, y[i] + x[j]) for i in range(n) for j in range(n))
    return joint - marginal / n**2


def _ref_club_learning(critic: ConcatCritic, x: list[list[float]], y: list[list[float]]) -> float:
    """-I_NCE of the CLUB critic: g(y_i, x_j), logsumexp over j."""
    n = len(x)
    joint = sum(_mlp_by_loops(critic, y[i] + x[i]) for i in range(n)) / n
    lse = sum(
        math.log(sum(math.exp(_mlp_by_loops(critic, y[i] + x[j])) for j in range(n)))
        for i in range(n)
    )
    return -(joint - lse / n + math.log(n))


X3 = [[0.5, -1.0], [1.5, 0.25], [-0.75, 2.0]]
Y3 = [[1.0, 0.5], [-0.5, 1.25], [2.0, -1.5]]


# ---------------------------------------------------------- hand-computed cases
@pytest.mark.parametrize("efficient", [True, False])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_infonce_matches_hand_computed_case(efficient: bool, activation: str) -> None:
    bound = InfoNCEBound(2, 2, hidden_dim=3, layers=1, activation=activation, efficient=efficient)
    bound.double()
    _set_tiny_weights(bound.critic)
    x, y = torch.tensor(X3, dtype=torch.float64), torch.tensor(Y3, dtype=torch.float64)
    expected = _ref_nce(bound.critic, X3, Y3)
    assert bound.lower_bound(x, y).item() == pytest.approx(expected, abs=1e-12)
    assert bound(x, y).item() == pytest.approx(-expected, abs=1e-12)
    # the anchor/negative convention matters: swapping roles gives another value
    swapped = _ref_nce(bound.critic, Y3, X3)
    assert abs(swapped - expected) > 1e-4


@pytest.mark.parametrize("efficient", [True, False])
def test_club_matches_hand_computed_case(efficient: bool) -> None:
    club = NCECLUBBound(2, 2, hidden_dim=3, layers=1, efficient=efficient).double()
    _set_tiny_weights(club.critic)
    x, y = torch.tensor(X3, dtype=torch.float64), torch.tensor(Y3, dtype=torch.float64)
    expected = _ref_club(club.critic, X3, Y3)
    assert club(x, y).item() == pytest.approx(expected, abs=1e-12)
    learning = _ref_club_learning(club.critic, X3, Y3)
    assert club.learning_loss(x, y).item() == pytest.approx(learning, abs=1e-12)
    # input order [y, x]: the [x, y] order would give different numbers
    assert abs(_ref_club(club.critic, Y3, X3) - expected) > 1e-4


def test_club_learning_loss_is_infonce_with_swapped_inputs() -> None:
    """learning_loss(x, y) == L_NCE with a critic on [y, x]: InfoNCE(x=y, y=x)."""
    torch.manual_seed(0)
    club = NCECLUBBound(3, 4, hidden_dim=8).double()
    nce = InfoNCEBound(4, 3, hidden_dim=8).double()
    nce.critic.load_state_dict(club.critic.state_dict())
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    # NCE anchors are its second argument; CLUB's anchors are y, negatives x
    scores_club, _ = club.scores(x, y)  # g(y_i, x_j)
    scores_nce, _ = nce.scores(x=y, y=x)  # f(y_j, x_i)
    torch.testing.assert_close(scores_club, scores_nce.T, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- known limits
@pytest.mark.parametrize("seed", range(4))
def test_infonce_is_at_most_log_batch(seed: int) -> None:
    torch.manual_seed(seed)
    n = 16
    bound = InfoNCEBound(4, 4, hidden_dim=32)
    with torch.no_grad():
        for p in bound.critic.parameters():
            p.mul_(10.0)  # a sharp critic pushes the estimate towards log N
    x = torch.randn(n, 4)
    for y in (x.clone(), x + 0.01 * torch.randn(n, 4), torch.randn(n, 4)):
        assert bound.lower_bound(x, y).item() <= math.log(n) + 1e-6


def test_infonce_is_nonpositive_in_expectation_for_independent_inputs() -> None:
    """E[I_NCE] <= I(X;Y) = 0 for any fixed critic when x and y are independent."""
    torch.manual_seed(0)
    bound = InfoNCEBound(3, 3, hidden_dim=16)
    with torch.no_grad():
        for p in bound.critic.parameters():
            p.mul_(3.0)
        estimates = [
            bound.lower_bound(torch.randn(32, 3), torch.randn(32, 3)).item() for _ in range(200)
        ]
    assert np.mean(estimates) <= 0.01


def _correlated_gaussian(
    n: int, dim: int, rho: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, dim, generator=gen)
    y = rho * x + math.sqrt(1 - rho**2) * torch.randn(n, dim, generator=gen)
    return x, y


def test_club_upper_bounds_and_nce_lower_bounds_gaussian_mi() -> None:
    """NCE-CLUB >= I(X;Y) >= InfoNCE on correlated Gaussians (official MI notebook).

    ``I = -dim/2 log(1 - rho^2)``. After training the critic with
    ``learning_loss`` (lr 5e-3, batch 64 as the notebook, fewer steps and a
    narrower critic to stay fast), the CLUB estimate on fresh batches lies
    above the true MI and the InfoNCE estimate below it.
    """
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    dim, true_mi = 2, 1.0
    rho = math.sqrt(1 - math.exp(-2 * true_mi / dim))
    club = NCECLUBBound(dim, dim, hidden_dim=64)
    opt = torch.optim.Adam(club.parameters(), lr=5e-3)
    for _ in range(300):
        x, y = _correlated_gaussian(64, dim, rho, gen)
        loss = club.learning_loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        batches = [_correlated_gaussian(256, dim, rho, gen) for _ in range(8)]
        club_est = float(np.mean([club(x, y).item() for x, y in batches]))
        nce_est = float(np.mean([-club.learning_loss(x, y).item() for x, y in batches]))
    assert club_est >= true_mi
    assert nce_est <= true_mi + 0.05
    assert nce_est > 0.5  # the critic did learn


# -------------------------------------------------------- fast == tiled critic
@pytest.mark.parametrize("layers", [0, 1, 2])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_fast_critic_equals_tiled_in_values_and_gradients(layers: int, activation: str) -> None:
    torch.manual_seed(layers)
    critic = ConcatCritic(3, 5, hidden_dim=16, layers=layers, activation=activation).double()
    a = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(7, 6, dtype=torch.float64)  # a generic downstream use

    results = []
    for fn in (critic.pairwise, lambda u, v: tiled_pairwise_scores(critic, u, v)):
        critic.zero_grad()
        a.grad = b.grad = None
        scores = fn(a, b)
        (scores * weights).sum().backward()
        grads = [a.grad.clone(), b.grad.clone()] + [p.grad.clone() for p in critic.parameters()]
        results.append((scores.detach(), grads))
    (fast, fast_grads), (tiled, tiled_grads) = results
    assert fast.shape == (7, 6)
    torch.testing.assert_close(fast, tiled, rtol=0, atol=1e-6)
    for g_fast, g_tiled in zip(fast_grads, tiled_grads):
        torch.testing.assert_close(g_fast, g_tiled, rtol=0, atol=1e-6)
    # the pair diagonal is the paired forward
    square = critic.pairwise(a[:6], b)
    torch.testing.assert_close(square.diagonal(), critic(a[:6], b), rtol=0, atol=1e-12)


@pytest.mark.parametrize("bound_cls", [InfoNCEBound, NCECLUBBound])
def test_fast_and_tiled_bounds_agree(bound_cls: type) -> None:
    torch.manual_seed(1)
    fast = bound_cls(4, 3, hidden_dim=16).double()
    tiled = bound_cls(4, 3, hidden_dim=16, efficient=False).double()
    tiled.load_state_dict(fast.state_dict())
    x = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    methods = ["forward"] + (["learning_loss"] if bound_cls is NCECLUBBound else [])
    for name in methods:
        values, grads = [], []
        for module in (fast, tiled):
            x.grad = y.grad = None
            out = getattr(module, name)(x, y)
            out.backward()
            values.append(out.detach())
            grads.append((x.grad.clone(), y.grad.clone()))
        torch.testing.assert_close(values[0], values[1], rtol=0, atol=1e-6)
        for g0, g1 in zip(grads[0], grads[1]):
            torch.testing.assert_close(g0, g1, rtol=0, atol=1e-6)


def test_pairwise_gradcheck() -> None:
    torch.manual_seed(0)
    critic = ConcatCritic(2, 3, hidden_dim=5, activation="tanh").double()
    a = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(critic.pairwise, (a, b))
    club = NCECLUBBound(2, 3, hidden_dim=5, activation="tanh").double()
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(club, (x, y))
    assert torch.autograd.gradcheck(club.learning_loss, (x, y))


# ---------------------------------------------------------------- bad input
def test_bad_inputs_raise_value_errors() -> None:
    bound = InfoNCEBound(2, 3, hidden_dim=4)
    with pytest.raises(ValueError, match="same N pairs"):
        bound(torch.randn(4, 2), torch.randn(5, 3))
    with pytest.raises(ValueError, match="built for inputs of size"):
        bound(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="N >= 2"):
        bound(torch.randn(1, 2), torch.randn(1, 3))
    with pytest.raises(ValueError, match="activation"):
        ConcatCritic(2, 2, activation="gelu")
    with pytest.raises(ValueError, match="layers"):
        ConcatCritic(2, 2, layers=-1)
