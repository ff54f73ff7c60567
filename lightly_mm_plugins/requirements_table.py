"""What each registered objective needs from a training script, read from its ``Requirements``.

The table is generated, never written by hand: every objective is built with
default arguments (as the conformance kit builds it) and its
:class:`~lightly_mm_plugins.api.Requirements`, auxiliary parameters and
registry metadata are read. ``lightly-mm plugins --requirements`` prints it and
``docs/using-in-lightly.md`` holds a copy that a test compares with this
output, so the docs cannot drift from the code.

Columns:

* **views**: observations per modality in ``EncodedBatch.embeddings``
  (``image 2`` = two augmented images; ``all`` = every caption, multifold);
* **momentum**: EMA encoder embeddings in ``batch.momentum`` (with the decay);
* **local features**: patch / token features in ``batch.local``;
* **labels**: ``batch.labels``;
* **pseudo labels**: ``honoured`` (restricts negatives when given) or
  ``needed`` (the objective's default stage scheduler produces them, e.g. MCL:
  use its stage callback in a script);
* **auxiliary step**: a second optimiser over ``auxiliary_parameters()``
  stepped with ``auxiliary_loss`` (manual optimisation in Lightning);
* **stages**: the default stage scheduler.

Example:
    >>> print(requirements_markdown().splitlines()[0])  # doctest: +SKIP
    | objective | plugin | views | momentum | local features | labels | pseudo labels | ...
"""

from __future__ import annotations

from typing import Any

__all__ = ["COLUMNS", "requirements_markdown", "requirements_rows"]

COLUMNS: tuple[str, ...] = (
    "objective",
    "plugin",
    "views",
    "momentum",
    "local features",
    "labels",
    "pseudo labels",
    "auxiliary step",
    "stages",
)


def _views(obj: Any) -> str:
    req = obj.requirements
    if req.multifold:
        return "all (multifold)"
    counts = {m: req.views_needed(m) for m in obj.modalities}
    if len(set(counts.values())) == 1:
        return f"{next(iter(counts.values()))} per modality"
    return ", ".join(f"{m} {n}" for m, n in counts.items())


def requirements_rows(host: Any = None) -> list[dict[str, str]]:
    """One row per registered objective (sorted by name), keyed by :data:`COLUMNS`.

    An objective that cannot be built with default arguments gets a row saying so.
    """
    from .manager import get_host
    from .testing import build_objective

    host = host or get_host()
    rows = []
    for entry in host.registry("objectives").entries():
        row = {"objective": f"`{entry.name}`", "plugin": entry.distribution}
        try:
            obj = build_objective(entry)
        except Exception as exc:  # shown in the table, not hidden
            row.update({c: "" for c in COLUMNS[2:]})
            row["views"] = f"(cannot build: {type(exc).__name__})"
            rows.append(row)
            continue
        req = obj.requirements
        scheduler = str(entry.metadata.get("scheduler") or "single")
        if req.pseudo_labels:
            pseudo = "needed" if scheduler != "single" else "honoured"
        else:
            pseudo = "—"
        aux = obj.auxiliary_parameters()
        row.update(
            {
                "views": _views(obj),
                "momentum": f"yes (decay {req.momentum_decay:g})" if req.momentum else "—",
                "local features": "yes" if req.local_features else "—",
                "labels": "yes" if req.labels else "—",
                "pseudo labels": pseudo,
                "auxiliary step": (
                    f"yes ({max(1, obj.auxiliary_steps)} per batch, lr {obj.auxiliary_lr:g})"
                    if aux
                    else "—"
                ),
                "stages": f"`{scheduler}`",
            }
        )
        rows.append(row)
    return rows


def requirements_markdown(host: Any = None) -> str:
    """The rows of :func:`requirements_rows` as a Markdown table."""
    rows = requirements_rows(host)
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(r[c] for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)
