"""The template's own tests: its math, and the host's conformance kit."""

import math

import torch
from lightly_mm_dcl.objective import dcl_loss

from lightly_mm_plugins.testing import assert_plugin_conforms


def test_matches_hand_computed_case():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # s_ii = 1, s_ij = 0: L = -1/tau + log(exp(0)) for every row.
    assert math.isclose(dcl_loss(a, b, 0.5).item(), -2.0, rel_tol=1e-6)


def test_plugin_conforms():
    assert_plugin_conforms("lightly-mm-dcl")
