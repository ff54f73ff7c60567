"""MCL's stage scheduler: cluster after each stage, contrast within pseudo-label groups next.

Multi-stage Contrastive Learning (Zhang et al., ECCV 2024, arXiv 2402.11816;
official code github.com/MajorDavidZhang/MCL) fights *feature suppression*: a
contrastive model that can tell instances apart with a few easy features stops
learning the others. MCL trains in stages:

1. Stage 0 trains as usual.
2. After stage ``t`` the whole training set is embedded with the current model,
   the features are L2-normalised and clustered by k-means into ``K`` clusters
   (official ``cluster.py``: ``MiniBatchKMeans``, ``K = 10``): labels ``c_t``.
3. Stage ``s >= 1`` uses the pseudo label that combines the clusterings of
   *all* earlier stages in mixed radix ``K``::

       p_s(x) = (((c_0(x) K + c_1(x)) K + c_2(x)) ... ) K + c_{s-1}(x)

   and contrasts an anchor only against negatives with the same ``p_s``
   ("feature-aware negative sampling"): features learned in stages ``< s``
   cannot tell such negatives apart, so the loss can only fall by learning new
   features. Official ``my_training/data.py`` (``MCL_batch_sampler_DDP``) draws
   every *global* batch from one group (``sampler="group"``); the equivalent
   in-batch negative mask (``sampler="mask"``) keeps ordinary batches and lets
   the objective drop other-group negatives
   (:func:`lightly_mm_plugins.losses.same_group_mask`).
4. The final representation is ``normalize(cat(f_0(x), ..., f_S(x)))`` over all
   stage models, stage 0 included, the per-stage features *not* normalised
   before concatenation (official ``MMVP.ipynb``, cross-stage representation
   integration).

Official-code bug: ``cluster.py`` builds the pseudo labels with
``for s in range(stage+1): cl = torch.load(<file of *stage*>); cls = cls*K + cl``,
i.e. it reloads the *current* stage's labels every iteration and yields
``c_stage * (1 + K + ... + K^stage)``, a relabelling of the latest clustering
alone. This module implements the intended combination above.

Example:
    >>> import torch
    >>> sched = MCLScheduler(epochs=1, num_stages=3, num_clusters=2, sampler="mask")
    >>> sched.load_state_dict({
    ...     "format": 1, "num_clusters": 2, "instance_ids": torch.arange(4),
    ...     "cluster_labels": torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]])})
    >>> sched.pseudo_labels(1, torch.arange(4)).tolist()
    [0, 0, 1, 1]
    >>> sched.pseudo_labels(2, torch.arange(4)).tolist()
    [0, 1, 2, 3]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightly_mm_plugins.api import StageContext, StagePlan, StageScheduler

from .clustering import KMEANS_BACKENDS, kmeans_labels

__all__ = [
    "SAMPLERS",
    "MCLScheduler",
    "combine_pseudo_labels",
    "group_batches",
    "same_group_others",
    "warn_if_no_negatives",
]

logger = logging.getLogger(__name__)

#: Ways to restrict negatives to the anchor's pseudo-label group.
SAMPLERS: tuple[str, ...] = ("group", "mask")

_STATE_FORMAT = 1


def combine_pseudo_labels(cluster_labels: Sequence[Tensor], num_clusters: int) -> Tensor:
    """Mixed-radix combination of the cluster labels of all earlier stages.

    ``p = (((c_0 K + c_1) K + c_2) ... ) K + c_{s-1}``: two instances share
    ``p`` iff they share the cluster of *every* earlier stage. This is what the
    official ``cluster.py`` intends (its loop reloads the current stage's file
    each time, so it only ever uses the latest clustering; see the module
    docstring).

    Args:
        cluster_labels: ``s >= 1`` tensors ``(N,)`` with values in ``[0, K)``,
            oldest stage first.
        num_clusters: ``K``.

    Returns:
        ``(N,)`` long pseudo labels in ``[0, K^s)``.

    Example:
        >>> import torch
        >>> combine_pseudo_labels([torch.tensor([2, 0]), torch.tensor([1, 1])], 3).tolist()
        [7, 1]
    """
    if not cluster_labels:
        raise ValueError("combine_pseudo_labels needs the labels of at least one stage")
    out = torch.zeros_like(cluster_labels[0], dtype=torch.long)
    for stage, labels in enumerate(cluster_labels):
        if labels.shape != out.shape:
            raise ValueError(
                f"cluster labels of stage {stage} have shape {tuple(labels.shape)}, "
                f"expected {tuple(out.shape)}"
            )
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_clusters):
            raise ValueError(
                f"cluster labels of stage {stage} must lie in [0, {num_clusters}), got "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
        out = out * num_clusters + labels.long()
    return out


def group_batches(
    groups: Tensor,
    batch_size: int,
    world_size: int = 1,
    rank: int = 0,
    seed: int = 0,
    epoch: int = 0,
) -> list[list[int]]:
    """One rank's batches for one epoch, every global batch drawn from one group.

    The behaviour of the official ``MCL_batch_sampler_DDP``
    (``my_training/data.py``), made deterministic per ``(seed, epoch)`` and
    identical on every rank:

    * every group (ascending pseudo label) is shuffled and cut to
      ``floor(n_g / (B W)) B W`` indices (``B`` = per-rank batch size, ``W`` =
      world size); groups smaller than one global batch never appear;
    * each block of ``B W`` consecutive shuffled indices is one global batch;
      rank ``r`` takes the block's positions ``r, r + W, r + 2W, ...`` (the
      official round-robin split over ranks), so ranks are disjoint and
      together cover the global batch;
    * batches are emitted round-robin over the groups: first batch of group 0,
      of group 1, ..., then the second batch of every group that has one, etc.

    The official sampler pops from the end of each rank's list; reading from
    the front of a uniformly shuffled list gives the same distribution.

    Args:
        groups: ``(M,)`` pseudo label of every dataset index.
        batch_size: Per-rank batch size ``B``.
        world_size: Number of ranks ``W``.
        rank: This rank.
        seed: Run seed.
        epoch: Epoch; a new shuffle every epoch.

    Returns:
        Lists of ``B`` dataset indices; every rank gets the same number.

    Example:
        >>> import torch
        >>> group_batches(torch.tensor([0, 0, 1, 1, 1, 0, 1]), 2, seed=0)  # doctest: +SKIP
        [[5, 0], [4, 6]]
    """
    if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"need batch_size >= 1, world_size >= 1 and 0 <= rank < world_size, got "
            f"batch_size={batch_size}, world_size={world_size}, rank={rank}"
        )
    groups = groups.detach().cpu().long().reshape(-1)
    global_bs = batch_size * world_size
    gen = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
    per_group: list[list[list[int]]] = []
    largest = 0
    for g in torch.unique(groups).tolist():  # sorted ascending
        members = (groups == g).nonzero().flatten()
        largest = max(largest, int(members.numel()))
        shuffled = members[torch.randperm(members.numel(), generator=gen)]
        keep = shuffled.numel() // global_bs * global_bs
        blocks = shuffled[:keep].reshape(-1, global_bs)
        per_group.append([block[rank::world_size].tolist() for block in blocks])
    rounds = max((len(b) for b in per_group), default=0)
    if rounds == 0:
        raise ValueError(
            f"MCL group sampler: no pseudo-label group has a full global batch of "
            f"{batch_size} x {world_size} = {global_bs} instances (largest group: {largest} "
            f"of {groups.numel()}). Lower the batch size, num_clusters or num_stages, or use "
            "sampler='mask' (ordinary batches with an in-batch negative mask)."
        )
    out: list[list[int]] = []
    for k in range(rounds):
        for batches in per_group:
            if k < len(batches):
                out.append(batches[k])
    return out


def same_group_others(groups: Tensor) -> float:
    """Mean number of *other* instances in an instance's pseudo-label group.

    ``sum_g n_g (n_g - 1) / M``: the negatives an anchor can have at most in a
    stage that contrasts only within groups (a batch of ``B`` out of ``M``
    instances holds about ``others * (B - 1) / (M - 1)`` of them).

    Example:
        >>> import torch
        >>> same_group_others(torch.tensor([0, 0, 1, 2]))
        0.5
    """
    counts = torch.unique(groups.reshape(-1), return_counts=True)[1].double()
    return float((counts * (counts - 1)).sum() / max(1, groups.numel()))


def warn_if_no_negatives(groups: Tensor, stage: int, num_clusters: int) -> float:
    """Warn when stage ``stage``'s groups leave (almost) no negatives; returns the mean
    number of same-group others (see :func:`same_group_others`).

    With every group a single instance the stage's loss is exactly 0 (nothing to
    contrast against) and the stage trains nothing; below one other instance on
    average most anchors see no negative in a batch.
    """
    others = same_group_others(groups)
    if others < 1.0:
        n = groups.numel()
        counts = torch.unique(groups.reshape(-1), return_counts=True)[1]
        alone = int((counts == 1).sum())
        what = (
            "no negatives at all (every group has one member): its loss is exactly 0"
            if (alone == n)
            else f"almost no negatives ({others:.2f} other instances per group on average)"
        )
        logger.warning(
            "MCL stage %d: %d pseudo-label groups over %d instances (%d alone in theirs) leave "
            "%s. Use fewer clusters (num_clusters=%d) or stages (num_stages), or more data.",
            stage,
            int(counts.numel()),
            n,
            alone,
            what,
            num_clusters,
        )
    return others


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1)


def _parse_freeze(freeze: str | Sequence[str] | None) -> tuple[str, ...]:
    if freeze is None:
        return ()
    if isinstance(freeze, str):
        names = [n.strip() for n in freeze.replace("+", " ").split()]
        return tuple(n for n in names if n and n.lower() != "none")
    return tuple(str(n) for n in freeze)


class MCLScheduler(StageScheduler):
    """MCL's stages: cluster after each stage, restrict negatives to the group next.

    Stage ``s`` trains ``epochs`` epochs. After stage ``s`` (not the last)
    :meth:`on_stage_end` embeds the training set through the pipeline
    (``context.embed_training_set()``: eval view, batched, on the training
    device, with a progress bar), L2-normalises the features and clusters them
    with k-means into ``num_clusters`` clusters (``kmeans="sklearn"``:
    ``MiniBatchKMeans`` on the CPU as the official code, with
    ``random_state = seed + stage``; ``kmeans="torch"``: batched Lloyd on the
    training device). Stage ``s >= 1`` then gets the mixed-radix pseudo labels
    of all earlier clusterings (:func:`combine_pseudo_labels`), either as a
    batch sampler drawing each global batch from one group (``"group"``,
    official) or as in-batch negative masking by the objective (``"mask"``).

    Defaults follow the official code:

    * ``num_stages=4``: the released ViT models are stages 1-3 and the MMVP
      notebook concatenates ``[vanilla, stage 1, stage 2, stage 3]``.
    * ``num_clusters=10`` (``cluster.py --num-clusters``), k-means
      ``max_iter=100``, ``tol=1e-5``, ``batch_size=1e6``, ``n_init=3``
      (scikit-learn 1.3.2 default).
    * ``freeze=("text",)`` in stages ``>= 1``: the stage-1 command uses
      ``--lock-text`` (and locks all but the last 6 image blocks, which a
      per-modality freeze cannot express). Stage 0 trains everything, since
      here stage 0 is trained rather than an off-the-shelf CLIP. Names of
      modalities the run does not have are ignored by the pipeline.
    * ``reinit_from_stage0=True``: every stage starts from the stage-0 model
      (the official command for each stage is ``main.py --pretrained openai``
      without ``--resume``; the previous stage's checkpoint is only used by
      ``cluster.py``). The pipeline restores the encoders saved at the end of
      stage 0.
    * ``sampler="group"`` (``MCL_batch_sampler_DDP``).

    Args:
        epochs: Epochs per stage (the host passes the user's ``--epochs``).
        num_stages: Stages including stage 0 (``>= 1``; 1 = ordinary training).
        num_clusters: ``K`` clusters per stage; up to ``K^s`` groups in stage ``s``.
        freeze: Modality names frozen in stages ``>= 1`` (a name, ``"a+b"``, a
            list, or ``None`` / ``"none"`` / ``[]`` for nothing).
        reinit_from_stage0: Start every stage ``>= 1`` from the stage-0 encoders.
        sampler: ``"group"`` or ``"mask"``.
        seed: Seed of k-means and of the group sampler's shuffles.
        kmeans: ``"sklearn"`` or ``"torch"`` (see :mod:`lightly_mm_mcl.clustering`).
        kmeans_max_iter, kmeans_tol, kmeans_batch_size, kmeans_n_init: k-means settings.

    Example:
        >>> sched = MCLScheduler(epochs=2, num_stages=3)
        >>> sched.num_stages(), sched.plan(0).freeze, sched.plan(1).freeze
        (3, (), ('text',))
    """

    def __init__(
        self,
        epochs: int = 1,
        num_stages: int = 4,
        num_clusters: int = 10,
        freeze: str | Sequence[str] | None = ("text",),
        reinit_from_stage0: bool = True,
        sampler: str = "mask",
        seed: int = 0,
        kmeans: str = "sklearn",
        kmeans_max_iter: int = 100,
        kmeans_tol: float = 1e-5,
        kmeans_batch_size: int = 1_000_000,
        kmeans_n_init: int = 3,
    ) -> None:
        if int(epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if int(num_stages) < 1:
            raise ValueError(f"num_stages must be >= 1 (stage 0 included), got {num_stages}")
        if int(num_clusters) < 2:
            raise ValueError(f"num_clusters must be >= 2, got {num_clusters}")
        if int(num_clusters) ** (int(num_stages) - 1) >= 2**62:
            raise ValueError(
                f"num_clusters ** (num_stages - 1) = {num_clusters}^{num_stages - 1} overflows "
                "the int64 pseudo labels; use fewer stages or clusters"
            )
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if kmeans not in KMEANS_BACKENDS:
            raise ValueError(f"kmeans must be one of {KMEANS_BACKENDS}, got {kmeans!r}")
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.epochs = int(epochs)
        self.stages = int(num_stages)
        self.num_clusters = int(num_clusters)
        self.freeze = _parse_freeze(freeze)
        self.reinit_from_stage0 = bool(reinit_from_stage0)
        self.sampler = sampler
        self.seed = int(seed)
        self.kmeans = kmeans
        self.kmeans_max_iter = int(kmeans_max_iter)
        self.kmeans_tol = float(kmeans_tol)
        self.kmeans_batch_size = int(kmeans_batch_size)
        self.kmeans_n_init = int(kmeans_n_init)
        self._instance_ids: Tensor | None = None
        self._cluster_labels: list[Tensor] = []
        self._lookup_cache: tuple[Tensor, Tensor] | None = None

    # ------------------------------------------------------------------ stages
    @property
    def needs_pseudo_labels(self) -> bool:
        """Whether the objective must honour ``batch.pseudo_labels``.

        With ``sampler="group"`` every global batch is one group, so any
        objective restricts its negatives correctly; with ``"mask"`` the
        objective must apply the mask.
        """
        return self.sampler == "mask"

    def num_stages(self) -> int:
        return self.stages

    def plan(self, stage: int) -> StagePlan:
        self._check_stage(stage)
        if stage == 0:
            return StagePlan(epochs=self.epochs)
        return StagePlan(
            epochs=self.epochs,
            reinit_from_stage0=self.reinit_from_stage0,
            freeze=self.freeze,
        )

    def _check_stage(self, stage: int) -> None:
        if not 0 <= int(stage) < self.stages:
            raise ValueError(f"stage must be in [0, {self.stages}), got {stage}")

    @property
    def cluster_labels(self) -> list[Tensor]:
        """Cluster labels ``(M,)`` of every finished stage (aligned with :attr:`instance_ids`)."""
        return list(self._cluster_labels)

    @property
    def instance_ids(self) -> Tensor | None:
        """Instance ids ``(M,)`` the stored labels refer to (None before the first clustering)."""
        return self._instance_ids

    def on_stage_end(self, context: StageContext) -> None:
        """Embed the training set, L2-normalise, k-means, store the labels of ``context.stage``."""
        stage = int(context.stage)
        if stage >= self.stages - 1:
            return  # nothing follows the last stage
        if stage > len(self._cluster_labels):
            raise RuntimeError(
                f"MCLScheduler: stage {stage} ended but the clusterings of stages "
                f"{len(self._cluster_labels)}..{stage - 1} are missing; resume from a checkpoint "
                "that holds the scheduler state"
            )
        features, ids = context.embed_training_set()
        if features.dim() != 2 or ids.shape != (features.shape[0],):
            raise ValueError(
                f"embed_training_set must return features (M, D) and instance ids (M,), got "
                f"{tuple(features.shape)} and {tuple(ids.shape)}"
            )
        ids = ids.detach().cpu().long()
        if torch.unique(ids).numel() != ids.numel():
            raise ValueError(
                "embed_training_set returned repeated instance ids; MCL clusters one feature "
                "vector per instance"
            )
        features = F.normalize(features.detach().float(), dim=-1)
        if self.kmeans == "torch":
            features = features.to(context.device)
        labels = kmeans_labels(
            features,
            self.num_clusters,
            backend=self.kmeans,
            seed=self.seed + stage,
            max_iter=self.kmeans_max_iter,
            tol=self.kmeans_tol,
            batch_size=self.kmeans_batch_size,
            n_init=self.kmeans_n_init,
        )
        labels = _broadcast_from_rank0(labels, context.device)
        if self._instance_ids is None or stage == 0:
            self._instance_ids = ids
            self._lookup_cache = None
        else:
            if ids.numel() != self._instance_ids.numel():
                raise ValueError(
                    f"stage {stage} embedded {ids.numel()} instances, stage 0 embedded "
                    f"{self._instance_ids.numel()}; MCL needs the same training set in every stage"
                )
            labels = labels[_positions(self._instance_ids, *torch.sort(ids))]
        self._cluster_labels = [*self._cluster_labels[:stage], labels]
        sizes = torch.bincount(labels, minlength=self.num_clusters).tolist()
        groups = combine_pseudo_labels(self._cluster_labels, self.num_clusters)
        logger.info(
            "MCL stage %d: k-means cluster sizes %s; stage %d has %d pseudo-label groups",
            stage,
            sizes,
            stage + 1,
            int(torch.unique(groups).numel()),
        )
        warn_if_no_negatives(groups, stage + 1, self.num_clusters)

    # ------------------------------------------------------------- pseudo labels
    def _lookup(self, instance_ids: Tensor) -> Tensor:
        """Row of every id of ``instance_ids`` in the stored labels."""
        assert self._instance_ids is not None
        if self._lookup_cache is None:
            self._lookup_cache = torch.sort(self._instance_ids)
        return _positions(instance_ids, *self._lookup_cache)

    def pseudo_labels(self, stage: int, instance_ids: Tensor) -> Tensor | None:
        """Pseudo labels ``(N,)`` (long, on ``instance_ids.device``); None in stage 0."""
        self._check_stage(stage)
        if stage == 0:
            return None
        if len(self._cluster_labels) < stage:
            raise RuntimeError(
                f"MCLScheduler: stage {stage} needs the clusterings of stages 0..{stage - 1}, "
                f"but only {len(self._cluster_labels)} exist. The pipeline must call "
                f"on_stage_end(stage={len(self._cluster_labels)}) before it asks for stage "
                f"{stage}'s batches or pseudo labels (and load the scheduler state when resuming)."
            )
        pos = self._lookup(instance_ids)
        labels = combine_pseudo_labels(
            [c[pos] for c in self._cluster_labels[:stage]], self.num_clusters
        )
        return labels.to(instance_ids.device)

    def batch_sampler(
        self,
        stage: int,
        instance_ids: Tensor,
        batch_size: int,
        world_size: int,
        rank: int,
        seed: int,
        epoch: int,
    ) -> list[list[int]] | None:
        """This rank's single-group batches for ``epoch`` (None in stage 0 or ``"mask"`` mode)."""
        self._check_stage(stage)
        if stage == 0 or self.sampler == "mask":
            return None
        groups = self.pseudo_labels(stage, instance_ids)
        assert groups is not None
        return group_batches(groups, batch_size, world_size, rank, seed, epoch)

    def combine(self, stage_features: Sequence[Tensor]) -> Tensor:
        """``normalize(cat(f_0, ..., f_s))``: per-stage features concatenated, then L2-normalised.

        Per-stage features are *not* normalised first (official ``MMVP.ipynb``).
        """
        feats = list(stage_features)
        if not feats:
            raise ValueError("combine needs the features of at least one stage")
        n = feats[0].shape[0]
        for s, f in enumerate(feats):
            if f.dim() != 2 or f.shape[0] != n:
                raise ValueError(
                    f"stage {s} features must have shape ({n}, D_s), got {tuple(f.shape)}"
                )
        return F.normalize(torch.cat(feats, dim=-1), dim=-1)

    # -------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Cluster labels and ids as plain tensors (``torch.load(weights_only=True)`` safe)."""
        ids = (
            self._instance_ids
            if self._instance_ids is not None
            else torch.zeros(0, dtype=torch.long)
        )
        labels = (
            torch.stack(self._cluster_labels)
            if self._cluster_labels
            else torch.zeros(0, ids.numel(), dtype=torch.long)
        )
        return {
            "format": _STATE_FORMAT,
            "num_clusters": self.num_clusters,
            "num_stages": self.stages,
            "instance_ids": ids.clone(),
            "cluster_labels": labels.clone(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if int(state.get("format", _STATE_FORMAT)) != _STATE_FORMAT:
            raise ValueError(f"unknown MCLScheduler state format {state.get('format')!r}")
        k = int(state.get("num_clusters", self.num_clusters))
        if k != self.num_clusters:
            raise ValueError(
                f"the checkpoint's cluster labels were made with num_clusters={k}, this run "
                f"uses {self.num_clusters}; resume with --scheduler-args num_clusters={k}"
            )
        ids = torch.as_tensor(state["instance_ids"]).long().reshape(-1)
        labels = torch.as_tensor(state["cluster_labels"]).long()
        if labels.numel() == 0:
            self._instance_ids = ids if ids.numel() else None
            self._cluster_labels = []
            self._lookup_cache = None
            return
        if labels.dim() != 2 or labels.shape[1] != ids.numel():
            raise ValueError(
                f"cluster_labels must have shape (stages, {ids.numel()}), got {tuple(labels.shape)}"
            )
        if labels.shape[0] > self.stages - 1:
            raise ValueError(
                f"the checkpoint holds {labels.shape[0]} clusterings, more than this run's "
                f"{self.stages} stages can use; resume with the same num_stages"
            )
        if int(labels.min()) < 0 or int(labels.max()) >= self.num_clusters:
            raise ValueError(f"cluster labels must lie in [0, {self.num_clusters})")
        self._instance_ids = ids.clone()
        self._cluster_labels = [row.clone() for row in labels]
        self._lookup_cache = None


def _positions(query: Tensor, sorted_ids: Tensor, order: Tensor) -> Tensor:
    """Index into the unsorted reference (``sorted_ids = reference[order]``) of every query id."""
    q = query.detach().cpu().long().reshape(-1)
    if sorted_ids.numel() == 0:
        raise ValueError("MCLScheduler: no instances were clustered")
    pos = torch.searchsorted(sorted_ids, q).clamp_max(sorted_ids.numel() - 1)
    found = sorted_ids[pos] == q
    if not bool(found.all()):
        raise ValueError(
            f"MCLScheduler: instance ids {q[~found][:5].tolist()} were not in the clustered "
            "training set; pseudo labels exist only for the instances embedded at the stage "
            "boundary (the same training set in every stage)"
        )
    return order[pos]


def _broadcast_from_rank0(labels: Tensor, device: torch.device) -> Tensor:
    """Under DDP every rank clusters; rank 0's labels win so that all ranks agree exactly."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return labels
    on = torch.device(device) if dist.get_backend() == "nccl" else torch.device("cpu")
    buf = labels.to(on).contiguous()
    dist.broadcast(buf, src=0)
    return buf.cpu()
