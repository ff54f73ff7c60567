"""Hook implementations of ``lightly-mm-mcl`` (imports no torch: factories are strings)."""

from lightly_mm_plugins import hookimpl

LIGHTLY_MM_HOOKSPEC = "1.0"

PAPER = (
    "Zhang, Lan, Qu, Cheng, Feng, Hooi: Learning the Unlearned: Mitigating Feature "
    "Suppression in Contrastive Learning (first titled: Avoiding Feature Suppression in "
    "Contrastive Learning: Learning What Has Not Been Learned Before), ECCV 2024, "
    "arXiv:2402.11816"
)
CODE = "https://github.com/MajorDavidZhang/MCL"


@hookimpl
def register_stage_schedulers(register):
    register(
        "mcl",
        "lightly_mm_mcl.scheduler:MCLScheduler",
        description=(
            "MCL: after each stage k-means the training set, next stage contrasts only "
            "within the combined pseudo-label group; final features = all stages concatenated"
        ),
        paper=PAPER,
        code=CODE,
    )


@hookimpl
def register_objectives(register):
    register(
        "mcl",
        "lightly_mm_mcl.objective:MCLObjective",
        description=(
            "MCL wrapper: any registered objective that honours pseudo labels (default clip) "
            "as the per-stage loss, run under the 'mcl' stage scheduler"
        ),
        view="clip",
        scheduler="mcl",
        paper=PAPER,
        code=CODE,
    )
