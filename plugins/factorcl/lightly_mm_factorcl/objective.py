"""FactorCL objectives: self-supervised (``factorcl``) and supervised (``factorcl-sup``).

FactorCL (Liang et al., NeurIPS 2023) factorizes each modality's representation
into *shared* and *unique* task-relevant parts. With task ``Y`` (labels, or in
the self-supervised case augmentations standing in for it), the paper's
objectives (Sec. 3) are::

    S   = I(X1;X2) - I(X1;X2|Y)                      shared, task-relevant
    U_i = I(X_i;Y) - I(X1;X2) + I(X1;X2|Y)           unique to modality i

Lower bounds (InfoNCE) estimate the terms to maximise, upper bounds (NCE-CLUB)
the terms to minimise. As in the official code (``synthetic_model.py``,
``multibench_model.py``) every term has its own projection head per modality
(``h`` below stands for "that term's head") and its own concat critic; the
objective returns the sum to **minimise**::

    L =  L_NCE(h(x1); h(x2))                 # -I(X1;X2)          shared  +
       + I_CLUB(h(x1); h(x2))                # +I(X1;X2)          unique  -
       + L_NCE(h(x1); y1) + L_NCE(h(x2); y2) # -I(Xi;Y)           unique  +
       + L_NCE(h(x1); h(x2) | Y)             # -I(X1;X2|Y)        unique  +
       + I_CLUB(h(x1); h(x2) | Y)            # +I(X1;X2|Y)        shared  -

where ``L_NCE = -I_NCE`` (:class:`~lightly_mm_factorcl.loss.InfoNCEBound`) and
``I_CLUB`` is :class:`~lightly_mm_factorcl.loss.NCECLUBBound`. Conditioning on a
variable ``c`` concatenates it to both critic inputs: ``[h(x1), c1]`` vs
``[h(x2), c2]`` (negatives are ordinary in-batch pairs).

* **SUP** (:class:`FactorCLSupObjective`): ``y_i`` = the raw label column
  ``y (N, 1)``, ``c1 = c2 = onehot(y)`` (``multibench_model.FactorCLSUP``).
* **SSL** (:class:`FactorCLObjective`): ``Y`` is approximated by augmentations.
  ``I(Xi;Y) -> I_NCE(h(xi); h(xi'))`` (the same head on the clean view ``xi``
  and the augmented view ``xi'``), and ``I(X1;X2|Y) -> I(X1;X2|X1',X2')`` with
  ``c1 = h(x1')``, ``c2 = h(x2')``: ``[h(x1), h(x1')]`` vs ``[h(x2), h(x2')]``
  for both the conditional NCE and the conditional CLUB
  (``multibench_model.FactorCLSSL``).

The CLUB critics are trained by their own optimizer (the host's auxiliary step):
:meth:`auxiliary_parameters` are the two CLUB critics, :meth:`auxiliary_loss` is
the sum of their ``learning_loss`` (``-I_NCE`` with the CLUB critic) on
detached features. The main optimizer trains everything else (encoders, every
projection head including the CLUB terms' heads, the four InfoNCE critics).

The downstream representation of a modality is the concatenation of its
shared and unique features (:meth:`FactorCLObjective.factorized` gives the
parts): shared = heads of ``I(X1;X2)`` and ``I(X1;X2|Y)``-CLUB, unique = heads
of ``I(X1;X2)``-CLUB, ``I(Xi;Y)`` and ``I(X1;X2|Y)``-NCE (the five head outputs
``multibench_model.get_embedding`` concatenates, grouped by factor).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import torch
from torch import Tensor, nn

from lightly_mm_plugins.api import (
    DistributedKind,
    EncodedBatch,
    Objective,
    ObjectiveOutput,
    Requirements,
)
from lightly_mm_plugins.heads import build_projection

from .loss import InfoNCEBound, NCECLUBBound

__all__ = ["FactorCLObjective", "FactorCLSupObjective", "SHARED_TERMS", "UNIQUE_TERMS"]

#: Heads whose outputs form the shared features Z_S (per modality).
SHARED_TERMS = ("nce_x1x2", "club_cond")
#: Heads whose outputs form the unique features Z_U (per modality).
UNIQUE_TERMS = ("club_x1x2", "nce_xy", "nce_cond")
_HEAD_TERMS = SHARED_TERMS + UNIQUE_TERMS


class _FactorCLBase(Objective):
    """Heads, critics and the loss sum shared by the SSL and SUP variants."""

    requirements = Requirements(distributed=DistributedKind.RANK_LOCAL)
    # Modalities meet only inside the critics: no shared embedding space to retrieve in.
    joint_space = False

    def __init__(
        self,
        embedding_dims: Mapping[str, int],
        modalities: Sequence[str],
        projection_dim: int | None,
        head_layers: int,
        critic_hidden_dim: int,
        critic_layers: int,
        activation: str,
        auxiliary_steps: int,
        auxiliary_lr: float,
        gather_distributed: bool,
        efficient: bool,
    ) -> None:
        super().__init__(embedding_dims, modalities)
        if auxiliary_steps < 1:
            raise ValueError(
                f"auxiliary_steps must be >= 1 (CLUB critic updates per batch), got "
                f"{auxiliary_steps}"
            )
        if not auxiliary_lr > 0:
            raise ValueError(f"auxiliary_lr must be > 0, got {auxiliary_lr}")
        if head_layers < 1:
            raise ValueError(
                f"head_layers must be >= 1 (Linear layers per head), got {head_layers}"
            )
        if projection_dim is not None and projection_dim < 1:
            raise ValueError(f"projection_dim must be positive or None, got {projection_dim}")
        self.auxiliary_steps = int(auxiliary_steps)
        self.auxiliary_lr = float(auxiliary_lr)
        if gather_distributed:
            self.requirements = replace(
                self.requirements, distributed=DistributedKind.GATHER_FOR_NEGATIVES
            )
        self.pair = self.modalities[:2]
        dims = [self.embedding_dims[m] for m in self.pair]
        self.projection_dims = [projection_dim or d for d in dims]
        self.heads = nn.ModuleDict(
            {
                term: nn.ModuleList(
                    build_projection(d, p, hidden_dim=d, num_layers=head_layers)
                    for d, p in zip(dims, self.projection_dims)
                )
                for term in _HEAD_TERMS
            }
        )
        p1, p2 = self.projection_dims
        y1, y2 = self._target_dims()
        c1, c2 = self._condition_dims()
        kw = {
            "hidden_dim": critic_hidden_dim,
            "layers": critic_layers,
            "activation": activation,
            "gather_distributed": gather_distributed,
            "efficient": efficient,
        }
        self.critics = nn.ModuleDict(
            {
                "nce_x1x2": InfoNCEBound(p1, p2, **kw),
                "nce_x1y": InfoNCEBound(p1, y1, **kw),
                "nce_x2y": InfoNCEBound(p2, y2, **kw),
                "nce_cond": InfoNCEBound(p1 + c1, p2 + c2, **kw),
            }
        )
        self.club = nn.ModuleDict(
            {
                "club_x1x2": NCECLUBBound(p1, p2, **kw),
                "club_cond": NCECLUBBound(p1 + c1, p2 + c2, **kw),
            }
        )

    # -------------------------------------------------------------- subclass API
    def _target_dims(self) -> tuple[int, int]:
        raise NotImplementedError

    def _condition_dims(self) -> tuple[int, int]:
        raise NotImplementedError

    def _targets(self, batch: EncodedBatch) -> tuple[Tensor, Tensor]:
        """``(y1, y2)``: what ``I(Xi;Y)`` pairs ``h(xi)`` with."""
        raise NotImplementedError

    def _conditions(self, batch: EncodedBatch, term: str) -> tuple[Tensor, Tensor]:
        """``(c1, c2)`` concatenated to the inputs of the conditional term ``term``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def _head(self, term: str, index: int, embedding: Tensor) -> Tensor:
        return self.heads[term][index](embedding)

    def _index(self, modality: str) -> int | None:
        return self.pair.index(modality) if modality in self.pair else None

    def _conditional_inputs(self, batch: EncodedBatch, term: str) -> tuple[Tensor, Tensor]:
        e1, e2 = (batch.view(m, 0) for m in self.pair)
        c1, c2 = self._conditions(batch, term)
        z1 = torch.cat([self._head(term, 0, e1), c1], dim=1)
        z2 = torch.cat([self._head(term, 1, e2), c2], dim=1)
        return z1, z2

    def terms(self, batch: EncodedBatch) -> dict[str, Tensor]:
        """The six signed terms whose sum is the loss (see the module docstring)."""
        e1, e2 = (batch.view(m, 0) for m in self.pair)
        y1, y2 = self._targets(batch)
        out = {
            "nce_x1x2": self.critics["nce_x1x2"](
                self._head("nce_x1x2", 0, e1), self._head("nce_x1x2", 1, e2)
            ),
            "club_x1x2": self.club["club_x1x2"](
                self._head("club_x1x2", 0, e1), self._head("club_x1x2", 1, e2)
            ),
            "nce_x1y": self.critics["nce_x1y"](self._head("nce_xy", 0, e1), y1),
            "nce_x2y": self.critics["nce_x2y"](self._head("nce_xy", 1, e2), y2),
            "nce_cond": self.critics["nce_cond"](*self._conditional_inputs(batch, "nce_cond")),
            "club_cond": self.club["club_cond"](*self._conditional_inputs(batch, "club_cond")),
        }
        return out

    # --------------------------------------------------------------- Objective
    def forward(self, batch: EncodedBatch) -> ObjectiveOutput:
        self.validate_batch(batch)
        terms = self.terms(batch)
        loss = torch.stack(list(terms.values())).sum()
        return ObjectiveOutput(loss=loss, logs={k: v.detach() for k, v in terms.items()})

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        """The two CLUB critics (trained only by :meth:`auxiliary_loss`)."""
        return list(self.club.parameters())

    def auxiliary_loss(self, batch: EncodedBatch) -> Tensor:
        """``learning_loss`` of both CLUB critics on detached head outputs.

        Official ``learning_loss`` (``synthetic_model.py`` / ``multibench_model.py``):
        ``-I_NCE`` of ``club_x1x2`` on ``(h(x1), h(x2))`` plus ``-I_NCE`` of
        ``club_cond`` on the conditioned inputs. Head outputs are computed without
        gradient: only the CLUB critics are stepped by this loss (the official
        code backpropagates into the heads too but discards those gradients).
        """
        self.validate_batch(batch)
        with torch.no_grad():
            e1, e2 = (batch.view(m, 0) for m in self.pair)
            z1 = self._head("club_x1x2", 0, e1)
            z2 = self._head("club_x1x2", 1, e2)
            c1, c2 = self._conditional_inputs(batch, "club_cond")
        loss_x1x2 = self.club["club_x1x2"].learning_loss(z1, z2)
        return loss_x1x2 + self.club["club_cond"].learning_loss(c1, c2)

    def factorized(self, modality: str, embedding: Tensor) -> dict[str, Tensor]:
        """Shared and unique features of ``modality`` from encoder embeddings ``(N, D)``.

        Returns ``{"shared": (N, 2 P), "unique": (N, 3 P)}`` with ``P`` the
        projection size of that modality: shared = ``[h_nce_x1x2, h_club_cond]``,
        unique = ``[h_club_x1x2, h_nce_xy, h_nce_cond]``.
        """
        index = self._index(modality)
        if index is None:
            raise ValueError(
                f"{type(self).__name__}: modality {modality!r} is not one of the contrasted "
                f"modalities {self.pair}"
            )
        return {
            "shared": torch.cat([self._head(t, index, embedding) for t in SHARED_TERMS], dim=1),
            "unique": torch.cat([self._head(t, index, embedding) for t in UNIQUE_TERMS], dim=1),
        }

    def representation(self, modality: str, embedding: Tensor) -> Tensor:
        """``[shared, unique]`` features ``(N, 5 P)`` (the encoder embedding for
        modalities this objective does not contrast)."""
        if self._index(modality) is None:
            return embedding
        parts = self.factorized(modality, embedding)
        return torch.cat([parts["shared"], parts["unique"]], dim=1)


class FactorCLObjective(_FactorCLBase):
    """FactorCL-SSL: task relevance approximated by augmented views.

    Needs two observations per modality (the ``factorcl-multimodal`` view):
    view 0 the clean observation ``x``, view 1 its augmentation ``x'``.
    Uses the first two ``modalities`` as ``(x1, x2)``.

    Terms (see the module docstring; ``h`` is each term's own head)::

        L_NCE(h(x1); h(x2)) + I_CLUB(h(x1); h(x2))
        + L_NCE(h(x1); h(x1')) + L_NCE(h(x2); h(x2'))
        + L_NCE([h(x1), h(x1')]; [h(x2), h(x2')])
        + I_CLUB([g(x1), g(x1')]; [g(x2), g(x2')])

    The last term follows ``multibench_model.FactorCLSSL``. The official
    ``synthetic_model.FactorCLSSL`` conditions its CLUB on ``[g(x1), g(x1)]`` vs
    ``[g(x2), g(x2)]`` (the augmented view unused, in ``forward`` and
    ``learning_loss``); ``club_cond_on_augmentation=False`` reproduces that.

    Args:
        embedding_dims: Encoder output size per modality.
        modalities: The two modalities ``(x1, x2)``.
        projection_dim: Output size of every head (None: the encoder size, as
            the official code).
        head_layers: Linear layers per head: 2 = ``multibench_model.mlp_head``
            ``Linear-ReLU-Linear`` (default), 3 = ``synthetic_model``'s
            ``mlp(d, d, d, 1)``.
        critic_hidden_dim: Concat-critic width (official: 512).
        critic_layers: Extra hidden critic layers (official: 1).
        activation: Critic activation (official: ``"relu"``).
        auxiliary_steps: CLUB-critic updates per batch (official notebook: 1).
        auxiliary_lr: Adam learning rate of the CLUB critics (official: 1e-4).
        club_cond_on_augmentation: False reproduces the synthetic-model quirk.
        gather_distributed: Score anchors against the keys of all ranks.
        efficient: Broadcast the critics' first layer (default) instead of tiling.

    Example:
        >>> import torch
        >>> from lightly_mm_plugins.api import EncodedBatch
        >>> obj = FactorCLObjective({"x1": 8, "x2": 8}, modalities=("x1", "x2"),
        ...                         critic_hidden_dim=16)
        >>> batch = EncodedBatch.from_tensors({"x1": torch.randn(6, 2, 8),
        ...                                    "x2": torch.randn(6, 2, 8)})
        >>> obj(batch).loss.shape, obj.representation("x1", torch.randn(6, 8)).shape
        (torch.Size([]), torch.Size([6, 40]))
    """

    requirements = Requirements(min_views=2, distributed=DistributedKind.RANK_LOCAL)

    def __init__(
        self,
        embedding_dims: Mapping[str, int],
        modalities: Sequence[str] = ("image", "text"),
        projection_dim: int | None = None,
        head_layers: int = 2,
        critic_hidden_dim: int = 512,
        critic_layers: int = 1,
        activation: str = "relu",
        auxiliary_steps: int = 1,
        auxiliary_lr: float = 1e-4,
        club_cond_on_augmentation: bool = True,
        gather_distributed: bool = False,
        efficient: bool = True,
    ) -> None:
        self.club_cond_on_augmentation = club_cond_on_augmentation
        super().__init__(
            embedding_dims,
            modalities,
            projection_dim,
            head_layers,
            critic_hidden_dim,
            critic_layers,
            activation,
            auxiliary_steps,
            auxiliary_lr,
            gather_distributed,
            efficient,
        )

    def _target_dims(self) -> tuple[int, int]:
        p1, p2 = self.projection_dims
        return p1, p2

    def _condition_dims(self) -> tuple[int, int]:
        p1, p2 = self.projection_dims
        return p1, p2

    def _targets(self, batch: EncodedBatch) -> tuple[Tensor, Tensor]:
        a1, a2 = (batch.view(m, 1) for m in self.pair)
        return self._head("nce_xy", 0, a1), self._head("nce_xy", 1, a2)

    def _conditions(self, batch: EncodedBatch, term: str) -> tuple[Tensor, Tensor]:
        view = 1 if (term == "nce_cond" or self.club_cond_on_augmentation) else 0
        a1, a2 = (batch.view(m, view) for m in self.pair)
        return self._head(term, 0, a1), self._head(term, 1, a2)

    def validate_batch(self, batch: EncodedBatch) -> None:
        super().validate_batch(batch)
        for m in self.pair:
            if not bool(batch.masks[m][:, :2].all()):
                raise ValueError(
                    f"{type(self).__name__}: every instance needs 2 observations of {m!r} "
                    "(clean + augmented); some are padding. Use the 'factorcl-multimodal' view."
                )


class FactorCLSupObjective(_FactorCLBase):
    """FactorCL-SUP: the task ``Y`` is the label.

    Uses view 0 of the first two ``modalities`` and ``batch.labels``
    (``requirements.labels``). ``I(Xi;Y)`` critics get the raw label as a
    one-column float input (``label_input="raw"``, official) or its one-hot
    encoding (``"onehot"``); the conditional terms concatenate ``onehot(y)``
    (``num_classes`` columns) to both critic inputs (``multibench_model``;
    ``condition_both=False`` conditions only the ``x1`` side, as
    ``synthetic_model.FactorCLSUP`` does).

    Args:
        embedding_dims: Encoder output size per modality.
        modalities: The two modalities ``(x1, x2)``.
        num_classes: One-hot width ``y_ohe_dim`` (default 20, the synthetic
            notebook's value; any value > the largest label works).
        label_input: ``"raw"`` (official) or ``"onehot"`` for the ``I(Xi;Y)`` critics.
        condition_both: Concatenate the one-hot label on both sides (official
            MultiBench) or only on the ``x1`` side (official synthetic model).
        projection_dim, head_layers, critic_hidden_dim, critic_layers, activation,
        auxiliary_steps, auxiliary_lr, gather_distributed, efficient:
            As :class:`FactorCLObjective`.

    Example:
        >>> import torch
        >>> from lightly_mm_plugins.api import EncodedBatch
        >>> obj = FactorCLSupObjective({"x1": 8, "x2": 8}, modalities=("x1", "x2"),
        ...                            num_classes=2, critic_hidden_dim=16)
        >>> batch = EncodedBatch.from_tensors(
        ...     {"x1": torch.randn(6, 8), "x2": torch.randn(6, 8)},
        ...     labels=torch.tensor([0, 1, 0, 1, 1, 0]))
        >>> obj(batch).loss.shape
        torch.Size([])
    """

    requirements = Requirements(labels=True, distributed=DistributedKind.RANK_LOCAL)

    def __init__(
        self,
        embedding_dims: Mapping[str, int],
        modalities: Sequence[str] = ("image", "text"),
        num_classes: int = 20,
        label_input: str = "raw",
        condition_both: bool = True,
        projection_dim: int | None = None,
        head_layers: int = 2,
        critic_hidden_dim: int = 512,
        critic_layers: int = 1,
        activation: str = "relu",
        auxiliary_steps: int = 1,
        auxiliary_lr: float = 1e-4,
        gather_distributed: bool = False,
        efficient: bool = True,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if label_input not in ("raw", "onehot"):
            raise ValueError(f"label_input must be 'raw' or 'onehot', got {label_input!r}")
        self.num_classes = int(num_classes)
        self.label_input = label_input
        self.condition_both = condition_both
        super().__init__(
            embedding_dims,
            modalities,
            projection_dim,
            head_layers,
            critic_hidden_dim,
            critic_layers,
            activation,
            auxiliary_steps,
            auxiliary_lr,
            gather_distributed,
            efficient,
        )

    def _target_dims(self) -> tuple[int, int]:
        d = 1 if self.label_input == "raw" else self.num_classes
        return d, d

    def _condition_dims(self) -> tuple[int, int]:
        return self.num_classes, (self.num_classes if self.condition_both else 0)

    def _onehot(self, batch: EncodedBatch) -> Tensor:
        labels = batch.labels
        assert labels is not None  # validate_batch checked it
        ref = batch.view(self.pair[0], 0)
        return nn.functional.one_hot(labels.long(), self.num_classes).to(ref.dtype)

    def _targets(self, batch: EncodedBatch) -> tuple[Tensor, Tensor]:
        assert batch.labels is not None
        ref = batch.view(self.pair[0], 0)
        if self.label_input == "raw":
            y = batch.labels.to(ref.dtype).reshape(-1, 1)
        else:
            y = self._onehot(batch)
        return y, y

    def _conditions(self, batch: EncodedBatch, term: str) -> tuple[Tensor, Tensor]:
        onehot = self._onehot(batch)
        return onehot, (onehot if self.condition_both else onehot[:, :0])

    def validate_batch(self, batch: EncodedBatch) -> None:
        super().validate_batch(batch)
        labels = batch.labels
        assert labels is not None
        if labels.shape != (batch.batch_size,):
            raise ValueError(
                f"{type(self).__name__}: labels must have shape ({batch.batch_size},), got "
                f"{tuple(labels.shape)}"
            )
        if labels.dtype.is_floating_point and not bool((labels == labels.round()).all()):
            raise ValueError(f"{type(self).__name__}: labels must be integer class ids")
        if bool((labels < 0).any()) or bool((labels >= self.num_classes).any()):
            raise ValueError(
                f"{type(self).__name__}: labels must lie in [0, num_classes={self.num_classes}), "
                f"got min {int(labels.min())}, max {int(labels.max())}; pass "
                "num_classes=<number of classes> to the objective"
            )
