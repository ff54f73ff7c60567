"""The baseline view: one augmented observation of every modality."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightly_mm_plugins.views import ModalityView


class CLIPView(ModalityView):
    """One randomly chosen, augmented observation per modality.

    Example:
        >>> view = CLIPView(modalities={"image": "image", "text": "text"})
    """

    def __init__(self, modalities: Mapping[str, str], image_size: int = 32, **kwargs: Any) -> None:
        super().__init__(
            modalities,
            views_per_modality={m: 1 for m in modalities},
            image_size=image_size,
            **kwargs,
        )
