"""Components the host itself provides: always loaded, cannot be disabled."""

from __future__ import annotations

from .hookspecs import hookimpl
from .registry import Register

_F = "lightly_mm_plugins.encoders.factories:"


@hookimpl
def register_encoders(register: Register) -> None:
    for name, what in (
        ("small-resnet", "torchvision ResNet-10 at width 32, small-image stem (default image)"),
        ("resnet18", "torchvision ResNet-18 (small-image stem up to 64 px)"),
        ("resnet50", "torchvision ResNet-50 (small-image stem up to 64 px)"),
        ("vit", "torchvision VisionTransformer, small configuration"),
    ):
        register(
            name,
            _F + "torchvision_encoder",
            description=what,
            modalities=("image",),
            default_model=name,
        )
    register(
        "torchvision",
        _F + "torchvision_encoder",
        description="torchvision:<small-resnet|resnet18|resnet50|vit>",
        modalities=("image",),
        takes_model=True,
    )
    register(
        "minilm",
        _F + "text_encoder",
        description="all-MiniLM-L6-v2, packaged offline (default text)",
        modalities=("text",),
        default_model="minilm",
    )
    register(
        "hf",
        _F + "hf_encoder",
        check=_F + "check_hf",
        description="hf:PATH, a local Hugging Face transformers / sentence-transformers folder",
        modalities=("text",),
        takes_model=True,
    )
    register(
        "timm",
        _F + "timm_encoder",
        check=_F + "check_timm",
        description="timm:<any timm.create_model name> (extra [timm])",
        modalities=("image",),
        takes_model=True,
    )
    register(
        "open_clip",
        _F + "open_clip_encoder",
        check=_F + "check_open_clip",
        description="open_clip:<model>, its image or text tower (extra [open_clip])",
        modalities=("image", "text"),
        takes_model=True,
    )
    register(
        "mlp",
        _F + "mlp_encoder",
        description="FactorCL's MLP (default vector)",
        modalities=("vector",),
    )


@hookimpl
def register_heads(register: Register) -> None:
    register("linear", "lightly_mm_plugins.heads:linear_head", description="one Linear layer")
    register("mlp", "lightly_mm_plugins.heads:mlp_head", description="Linear-ReLU-Linear (SimCLR)")


@hookimpl
def register_stage_schedulers(register: Register) -> None:
    register(
        "single",
        "lightly_mm_plugins.stages:SingleStageScheduler",
        description="one stage: ordinary training",
    )


@hookimpl
def register_views(register: Register) -> None:
    register(
        "paired",
        "lightly_mm_plugins.views:ModalityView",
        description="k augmented observations per modality (views_per_modality=...)",
    )
