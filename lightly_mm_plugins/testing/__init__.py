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

The kit is split by job, everything re-exported here (the public import path):
:mod:`.batches` (random batches, objectives built like the pipeline),
:mod:`.objective_checks` and :mod:`.component_checks` (the checks),
:mod:`.conformance` (running them on a plugin).
"""

from __future__ import annotations

# No ``__all__``, as before the split: ``from lightly_mm_plugins.testing import *`` also
# brings the ``lightly_mm_host`` fixture. Every re-export is written ``name as name``.
from ..api import EncodedBatch as EncodedBatch
from ..api import Objective as Objective
from ..api import Sample as Sample
from ..api import StageScheduler as StageScheduler
from ..api import View as View
from ..api import joint_embedding_problem as joint_embedding_problem
from ..manager import PluginHost as PluginHost
from ..manager import normalize_dist as normalize_dist
from ..registry import Entry as Entry
from .batches import EMBEDDING_DIMS as EMBEDDING_DIMS
from .batches import NUM_LOCAL as NUM_LOCAL
from .batches import build_objective as build_objective
from .batches import objective_kwargs as objective_kwargs
from .batches import random_batch as random_batch
from .conformance import CheckResult as CheckResult
from .conformance import assert_plugin_conforms as assert_plugin_conforms
from .conformance import check_plugin as check_plugin

try:  # pytest fixtures when used as ``pytest_plugins = ["lightly_mm_plugins.testing"]``
    import pytest

    @pytest.fixture
    def lightly_mm_host() -> PluginHost:
        """A fresh, strict host over the installed plugins."""
        return PluginHost(strict=True)

except ImportError:  # pragma: no cover - pytest is optional at run time
    pass
