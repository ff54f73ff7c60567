"""The ``multifold`` view: K observations of every instance per modality and step.

MXM-CLR learns from several observations of one instance at once (several
captions of one image, several rendered or augmented views of one shape).
:class:`MultifoldView` samples ``K`` of an instance's observations per
modality without replacement (``None``: all of them, in their stored order)
and transforms each by its kind (images: the host's SimCLR-style
augmentation). An instance with fewer than ``K`` observations is an error
naming the instance, unless ``repeat_to_fill`` lets image / vector modalities
re-augment the observations they have (two crops of one image).

Example:
    >>> view = MultifoldView(modalities={"image": "image", "text": "text"}, folds={"text": 3})
    >>> view.views_per_modality
    {'image': 1, 'text': 3}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightly_mm_plugins.api import Sample
from lightly_mm_plugins.errors import DataError
from lightly_mm_plugins.views import ModalityView

__all__ = ["MultifoldView", "default_folds"]


def default_folds(kind: str) -> int | None:
    """Folds per step when none are given: every caption (text), one image or vector."""
    return None if kind == "text" else 1


class MultifoldView(ModalityView):
    """Sample ``K`` observations per modality of every instance (``None``: all of them).

    Args:
        modalities: Modality name -> kind (``image``, ``text``, ``vector``).
        image_size: Output image side length.
        folds: Observations per step. A mapping sets ``K`` per modality name
            (``{"image": 2, "text": 3}``); modalities it leaves out get the
            default of their kind (text: ``None`` = all, image / vector: 1).
            A bare int or ``None`` sets ``K`` of every **text** modality
            (``folds=3``: three captions per instance, one image).
        repeat_to_fill: When an instance has fewer than ``K`` observations of
            an image or vector modality, re-augment the ones it has instead of
            raising (text never repeats: identical captions are not new folds).
        **kwargs: Passed to :class:`~lightly_mm_plugins.views.ModalityView`
            (``transforms``, ``seed``).

    Raises:
        DataError: (a ``ValueError``) when an instance has fewer than ``K``
            observations of a modality; the message names the instance.
    """

    def __init__(
        self,
        modalities: Mapping[str, str],
        image_size: int = 32,
        folds: int | Mapping[str, int | None] | None = None,
        repeat_to_fill: bool = False,
        **kwargs: Any,
    ) -> None:
        kinds = dict(modalities)
        per_modality: dict[str, int | None] = {m: default_folds(k) for m, k in kinds.items()}
        if isinstance(folds, Mapping):
            unknown = sorted(set(folds) - set(kinds))
            if unknown:
                raise ValueError(
                    f"folds names unknown modalities {unknown}; the data has {sorted(kinds)}"
                )
            per_modality.update(folds)
        else:
            for m, kind in kinds.items():
                if kind == "text":
                    per_modality[m] = folds
        for m, k in per_modality.items():
            if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
                raise ValueError(
                    f"folds[{m!r}] must be a positive int or None (all folds), got {k!r}"
                )
        self.repeat_to_fill = bool(repeat_to_fill)
        super().__init__(kinds, views_per_modality=per_modality, image_size=image_size, **kwargs)

    def check_folds(self, sample: Sample) -> None:
        """Raise a :class:`DataError` if ``sample`` has too few observations for ``K``."""
        for m, k in self.views_per_modality.items():
            obs = sample.observations.get(m)
            if obs is None:
                continue  # ModalityView names the missing modality
            if not obs:
                raise DataError(
                    f"instance {sample.instance_id} has no observation of modality {m!r}; "
                    "filter such instances out of the data"
                )
            repeatable = self.repeat_to_fill and self.modalities[m] != "text"
            if k is not None and len(obs) < k and not repeatable:
                hint = (
                    ""
                    if self.modalities[m] == "text"
                    else " or pass repeat_to_fill=True to re-augment the ones it has"
                )
                raise DataError(
                    f"the multifold view needs {k} observations of {m!r} per instance but "
                    f"instance {sample.instance_id} has only {len(obs)}; lower folds "
                    f"(e.g. folds={{{m!r}: {len(obs)}}}, or None for all){hint}, or filter "
                    "the data"
                )

    def __call__(self, sample: Sample) -> Sample:
        self.check_folds(sample)
        return super().__call__(sample)
