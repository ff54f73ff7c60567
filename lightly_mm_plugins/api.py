"""The small public types every plugin builds on.

This module is the data contract between the host pipeline and plugins:

* :class:`Sample` is one multimodal instance as a data set yields it and as a
  *view* transforms it: for every modality a list of observations ("folds").
* :class:`EncodedBatch` is what an *objective* receives: per modality a tensor of
  shape ``(N, V, D)`` (N instances, V observations each, D features) with a
  validity mask, the instance ids, optional labels, optional momentum-encoder
  embeddings, optional local (patch / token) features and optional pseudo labels
  from the stage scheduler.
* :class:`Objective` is a ``torch.nn.Module`` that owns its heads and returns an
  :class:`ObjectiveOutput`. It *declares* what it needs through
  :class:`Requirements`; the pipeline never special-cases a method by name.
* :class:`StageScheduler` says how many stages training has and what carries
  from one stage into the next (MCL's pseudo labels, for instance); defined in
  :mod:`lightly_mm_plugins.stages`, re-exported here.

The batch checks behind ``Objective.validate_batch`` live in
:mod:`lightly_mm_plugins.validation`. Only ``torch`` is imported here;
``import lightly_mm_plugins`` does not import this module until it is used.

Example:
    >>> import torch
    >>> from lightly_mm_plugins.api import EncodedBatch
    >>> batch = EncodedBatch.from_tensors(
    ...     {"image": torch.randn(4, 1, 8), "text": torch.randn(4, 1, 8)}
    ... )
    >>> batch.batch_size, batch.num_views("image")
    (4, 1)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from .stages import SingleStageScheduler, StageContext, StagePlan, StageScheduler
from .validation import joint_embedding_problem, validate_batch

__all__ = [
    "DistributedKind",
    "EncodedBatch",
    "ModalityKind",
    "Objective",
    "ObjectiveOutput",
    "joint_embedding_problem",
    "Requirements",
    "Sample",
    "SingleStageScheduler",
    "StageContext",
    "StagePlan",
    "StageScheduler",
    "View",
]

#: Modality kinds the host knows how to encode (``image``, ``text``, ``vector``).
ModalityKind = str
MODALITY_KINDS: tuple[str, ...] = ("image", "text", "vector")


class DistributedKind(str, enum.Enum):
    """How an objective behaves across ranks (names follow Lightly's 2.0 draft).

    * ``RANK_LOCAL``: each rank contrasts its own batch only; DDP gradient
      averaging is right, but negatives come from one rank's batch (the host
      says so when training on several devices).
    * ``GATHER_FOR_NEGATIVES``: embeddings of all ranks are gathered (with
      gradient, :func:`lightly.utils.dist.gather`) to serve as negatives.
    * ``GLOBAL_STATISTIC``: the value depends on statistics of the global batch.
    """

    RANK_LOCAL = "rank_local"
    GATHER_FOR_NEGATIVES = "gather_for_negatives"
    GLOBAL_STATISTIC = "global_statistic"

    @classmethod
    def of_gather(cls, gather_distributed: bool) -> DistributedKind:
        """The kind of an objective with a ``gather_distributed`` switch (lightly's habit).

        Example:
            >>> DistributedKind.of_gather(True).value
            'gather_for_negatives'
        """
        return cls.GATHER_FOR_NEGATIVES if gather_distributed else cls.RANK_LOCAL


@dataclass
class Sample:
    """One multimodal instance.

    Attributes:
        instance_id: Index of the instance in its data set; unique across the
            whole data set, so it stays unique across DDP ranks.
        observations: Modality name to a list of observations of that instance
            (several captions of one image are several observations). Raw data
            holds PIL images, strings or 1-d tensors; after a view, images and
            vectors are tensors.
        label: Optional class label, used for evaluation and supervised variants.
        extras: Free-form per-instance data (e.g. several labels for synthetic
            data: ``{"labels": {"shared": 1, "unique1": 0}}``).
    """

    instance_id: int
    observations: dict[str, list[Any]]
    label: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class View:
    """Turns one :class:`Sample` into the views an objective needs.

    A view is a callable ``Sample -> Sample`` (the returned sample's
    observations are model-ready: image tensors ``(C, H, W)``, strings, vector
    tensors ``(D,)``). It is built by the host with keyword arguments
    ``modalities`` (modality name -> kind) and ``image_size``, plus whatever the
    user passes. ``views_per_modality`` says how many observations per modality
    it emits (``None`` for "as many as the instance has", i.e. multifold).

    A subclass implements :meth:`__call__`; building on
    ``torchvision.transforms.v2`` and ``lightly.transforms`` is encouraged.
    """

    #: modality name -> number of observations emitted, or None for "all folds".
    views_per_modality: Mapping[str, int | None] = {}

    def __call__(self, sample: Sample) -> Sample:  # pragma: no cover - interface
        raise NotImplementedError

    def eval_view(self, sample: Sample) -> Sample:
        """The deterministic transform used to embed data for evaluation.

        Defaults to the training view; image views should override this with a
        resize + normalise transform without augmentation.
        """
        return self(sample)


@dataclass
class EncodedBatch:
    """What the pipeline hands an objective after encoding a collated batch.

    Shapes (N instances in this rank's batch, V observations per instance,
    D embedding size, L local features):

    * ``embeddings[m]``: ``(N, V, D)`` global embeddings of modality ``m``.
    * ``masks[m]``: ``(N, V)`` bool, False where an instance has fewer than V
      observations (padding). Padded rows of ``embeddings`` are zeros.
    * ``instance_ids``: ``(N,)`` long, unique across the data set (and so across
      ranks).
    * ``labels``: ``(N,)`` long or None.
    * ``momentum[m]``: ``(N, V, D)`` embeddings of the momentum (EMA) encoder,
      without gradient; present when the objective asks for ``momentum``.
    * ``local[m]``: ``(N, V, L, D)`` local features (patch cells / tokens),
      ``local_masks[m]``: ``(N, V, L)`` bool; present when asked for
      ``local_features``. ``momentum_local`` likewise from the momentum encoder.
    * ``pseudo_labels``: ``(N,)`` long or None, set by a stage scheduler (MCL):
      an objective that supports it contrasts an anchor only against negatives
      with the same pseudo label (see :func:`lightly_mm_plugins.losses.same_group_mask`).
    """

    embeddings: dict[str, Tensor]
    masks: dict[str, Tensor]
    instance_ids: Tensor
    labels: Tensor | None = None
    momentum: dict[str, Tensor] | None = None
    local: dict[str, Tensor] | None = None
    local_masks: dict[str, Tensor] | None = None
    momentum_local: dict[str, Tensor] | None = None
    pseudo_labels: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_tensors(
        cls,
        embeddings: Mapping[str, Tensor],
        *,
        instance_ids: Tensor | None = None,
        labels: Tensor | None = None,
        **kwargs: Any,
    ) -> EncodedBatch:
        """Build a batch with all-valid masks from ``(N, V, D)`` (or ``(N, D)``) tensors."""
        embs: dict[str, Tensor] = {}
        for name, emb in embeddings.items():
            if emb.dim() == 2:
                emb = emb.unsqueeze(1)
            if emb.dim() != 3:
                raise ValueError(
                    f"embeddings[{name!r}] must have shape (N, V, D) or (N, D), "
                    f"got {tuple(emb.shape)}"
                )
            embs[name] = emb
        if not embs:
            raise ValueError("EncodedBatch needs at least one modality")
        n = next(iter(embs.values())).shape[0]
        device = next(iter(embs.values())).device
        masks = {
            name: torch.ones(e.shape[:2], dtype=torch.bool, device=e.device)
            for name, e in embs.items()
        }
        if instance_ids is None:
            instance_ids = torch.arange(n, device=device)
        return cls(
            embeddings=embs,
            masks=masks,
            instance_ids=instance_ids,
            labels=labels,
            **kwargs,
        )

    @property
    def batch_size(self) -> int:
        return int(self.instance_ids.shape[0])

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.embeddings)

    def num_views(self, modality: str) -> int:
        return int(self.embeddings[modality].shape[1])

    def view(self, modality: str, index: int = 0) -> Tensor:
        """Embeddings ``(N, D)`` of observation ``index`` of ``modality``."""
        return self.embeddings[modality][:, index]

    def replace(self, **changes: Any) -> EncodedBatch:
        return replace(self, **changes)


@dataclass(frozen=True)
class Requirements:
    """What an objective needs from the pipeline; declared, never inferred by name.

    Attributes:
        modalities: How many modalities the objective contrasts (usually 2).
        min_views: Observations per modality the objective needs in
            ``EncodedBatch.embeddings`` (2 for intra-modal terms on two views):
            one number for every modality, or a mapping by modality name
            (e.g. ``{"image": 2, "text": 1}``; missing names need 1).
        multifold: Uses every observation of an instance (``masks`` and
            ``instance_ids`` matter), e.g. MXM-CLR.
        momentum: Needs momentum (EMA) encoder embeddings in ``batch.momentum``.
        momentum_decay: EMA decay for the momentum encoders (``0.995`` = TCL).
        local_features: Needs local features in ``batch.local``.
        labels: Needs ``batch.labels`` (supervised variants).
        pseudo_labels: Honours ``batch.pseudo_labels`` (restricts negatives);
            required for use under MCL's stage scheduler.
        distributed: Cross-rank behaviour (:class:`DistributedKind`).
    """

    modalities: int = 2
    min_views: int | Mapping[str, int] = 1
    multifold: bool = False
    momentum: bool = False
    momentum_decay: float = 0.995
    local_features: bool = False
    labels: bool = False
    pseudo_labels: bool = False
    distributed: DistributedKind = DistributedKind.GATHER_FOR_NEGATIVES

    def views_needed(self, modality: str) -> int:
        """Observations of ``modality`` the objective needs."""
        if isinstance(self.min_views, Mapping):
            return int(self.min_views.get(modality, 1))
        return int(self.min_views)


@dataclass
class ObjectiveOutput:
    """Loss to minimise plus named scalars to log (detached by the pipeline)."""

    loss: Tensor
    logs: dict[str, Tensor] = field(default_factory=dict)


class Objective(nn.Module):
    """Base class of a registered objective: a loss together with its heads.

    The host builds it as ``factory(embedding_dims=..., modalities=..., **user_kwargs)``
    where ``embedding_dims`` maps each modality name to its encoder's output
    size and ``modalities`` lists the modality names to contrast (in order).
    Subclasses keep paper defaults as keyword arguments and set
    :attr:`requirements`.

    Auxiliary optimisation (e.g. FactorCL's CLUB critics): an objective whose
    :meth:`auxiliary_parameters` is non-empty gets a second optimizer (Adam,
    ``auxiliary_lr``); after each main step the pipeline runs
    ``auxiliary_steps`` times ``auxiliary_loss(batch.detach())`` and steps only
    those parameters. The main optimizer never sees them.

    Joint embedding (cross-modal retrieval): :meth:`joint_embedding` maps a
    modality's encoder embedding into the space the loss compares modalities
    in; the pipeline evaluates retrieval there and checks, when it builds the
    objective, that every contrasted modality has one
    (:func:`joint_embedding_problem`). The default reads ``self.heads[modality]``
    (the ``nn.ModuleDict`` that :func:`lightly_mm_plugins.heads.modality_heads`
    builds); an objective that keeps its heads elsewhere overrides the method,
    and one without a shared space (FactorCL's critics) sets
    :attr:`joint_space` to False, so retrieval is not evaluated.
    """

    requirements: Requirements = Requirements()
    auxiliary_steps: int = 0
    auxiliary_lr: float = 1e-4
    #: The training stage the stage driver announced (:meth:`set_stage`), or None.
    stage: int | None = None
    #: Whether :meth:`joint_embedding` maps every contrasted modality into one
    #: shared space (True) or the objective has none (False: retrieval is skipped).
    joint_space: bool = True

    def __init__(
        self,
        embedding_dims: Mapping[str, int],
        modalities: Sequence[str] = ("image", "text"),
    ) -> None:
        super().__init__()
        modalities = tuple(modalities)
        missing = [m for m in modalities if m not in embedding_dims]
        if missing:
            raise ValueError(
                f"{type(self).__name__}: no embedding size for modalities {missing}; "
                f"embedding_dims has {sorted(embedding_dims)}. Pass modalities=... "
                "naming modalities of your data."
            )
        if len(modalities) < self.requirements.modalities:
            raise ValueError(
                f"{type(self).__name__} contrasts {self.requirements.modalities} "
                f"modalities, got modalities={modalities}"
            )
        self.embedding_dims = dict(embedding_dims)
        self.modalities = modalities

    def forward(self, batch: EncodedBatch) -> ObjectiveOutput:  # pragma: no cover
        raise NotImplementedError

    def representation(self, modality: str, embedding: Tensor) -> Tensor:
        """Downstream features of ``modality`` from encoder embeddings ``(N, D)``.

        Defaults to the encoder embedding itself (as Lightly evaluates
        backbones); FactorCL overrides it with shared + unique features.
        """
        return embedding

    def joint_embedding(self, modality: str, embedding: Tensor) -> Tensor | None:
        """Embedding ``(N, P)`` of ``modality`` in the space shared across modalities.

        Part of the contract (see the class docstring): used for cross-modal
        retrieval. Returns None only when :attr:`joint_space` is False. The
        default applies ``self.heads[modality]`` when ``heads`` is an
        ``nn.ModuleDict`` keyed by modality; otherwise it raises
        ``NotImplementedError`` naming the fix (never a silent None).
        """
        if not self.joint_space:
            return None
        heads = getattr(self, "heads", None)
        if isinstance(heads, nn.ModuleDict) and modality in heads:
            return heads[modality](embedding)  # type: ignore[no-any-return]
        raise NotImplementedError(
            f"{type(self).__name__} has no joint embedding for modality {modality!r}: the "
            "default joint_embedding uses self.heads[modality] (an nn.ModuleDict keyed by "
            "modality, as lightly_mm_plugins.heads.modality_heads builds). Override "
            "joint_embedding(modality, embedding) to map into the space your loss compares "
            "modalities in, or set joint_space = False if there is none (retrieval is then "
            "not evaluated)."
        )

    def set_stage(self, stage: int) -> None:
        """Told by the stage driver which training stage runs (0, 1, ...).

        The pipeline calls it at the start of training and of every epoch; in
        your own script a stage callback does (``lightly_mm_mcl.MCLStages``).
        The default remembers it in :attr:`stage` (None until a driver calls);
        a staged objective (MCL) uses it to tell "stage 0, no pseudo labels
        yet" from "no stages at all".
        """
        self.stage = int(stage)

    def on_after_optimizer_step(self) -> None:
        """Called by the pipeline after every optimiser step (``on_train_batch_end``).

        The default caps every learnable temperature of the objective: it calls
        :meth:`~lightly_mm_plugins.temperature.LogitScale.clamp_` on each
        :class:`~lightly_mm_plugins.temperature.LogitScale` submodule, as open_clip
        clamps ``logit_scale`` after the step. A training loop of your own calls
        ``objective.on_after_optimizer_step()`` after ``optimizer.step()``.
        """
        from .temperature import LogitScale

        for module in self.modules():
            if isinstance(module, LogitScale):
                module.clamp_()

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        """Parameters trained only by :meth:`auxiliary_loss` (empty by default)."""
        return []

    def auxiliary_loss(self, batch: EncodedBatch) -> Tensor:  # pragma: no cover
        """Loss of the auxiliary step; inputs are detached from the encoders."""
        raise NotImplementedError(
            f"{type(self).__name__} declares auxiliary parameters but no auxiliary_loss"
        )

    def validate_batch(self, batch: EncodedBatch) -> None:
        """Raise a ``ValueError`` naming the problem when ``batch`` cannot be used
        (see :func:`lightly_mm_plugins.validation.validate_batch`)."""
        validate_batch(self, batch)


# --------------------------------------------------------------------------
# Collated data and encoders (the pipeline's side of the contract)
# --------------------------------------------------------------------------


@dataclass
class CollatedBatch:
    """A batch of viewed samples, before encoding.

    * ``observations[m]``: images ``(N, V, C, H, W)`` float, vectors
      ``(N, V, D)`` float (padded with zeros), text: a list of N lists of V
      strings (padded with ``""``).
    * ``masks[m]``: ``(N, V)`` bool, False for padding.
    * ``kinds[m]``: the modality kind (``image``, ``text``, ``vector``).
    * ``instance_ids``: ``(N,)`` long; ``labels``: ``(N,)`` long or None.
    """

    observations: dict[str, Any]
    masks: dict[str, Tensor]
    kinds: dict[str, str]
    instance_ids: Tensor
    labels: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.instance_ids.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> CollatedBatch:
        """The batch with every tensor on ``device`` (text stays a list of strings).

        Lightning's default ``transfer_batch_to_device`` calls this (an object with
        ``.to()`` is moved as one), as does any loop of your own.
        """

        def move(x: Any) -> Any:
            return x.to(device, non_blocking=non_blocking) if isinstance(x, Tensor) else x

        return replace(
            self,
            observations={k: move(v) for k, v in self.observations.items()},
            masks={k: move(v) for k, v in self.masks.items()},
            instance_ids=move(self.instance_ids),
            labels=move(self.labels),
        )


class Encoder(nn.Module):
    """A modality encoder: ``forward(x) -> (N, feature_dim)``.

    ``x`` is a batch of one modality's observations: images ``(N, C, H, W)``,
    vectors ``(N, D)``, or a list of N strings. Encoders that can return local
    features (patch cells / tokens) set ``supports_local = True`` and implement
    :meth:`forward_local`.
    """

    feature_dim: int = 0
    local_dim: int = 0
    supports_local: bool = False

    def forward_local(self, x: Any) -> tuple[Tensor, Tensor, Tensor]:
        """``(global (N, D), local (N, L, D_local), local_mask (N, L) bool)``."""
        raise NotImplementedError(
            f"{type(self).__name__} does not provide local features; pick an encoder "
            "that does (ResNet feature-map cells, ViT patches, text tokens)"
        )
