"""Checkpoints that are never half-written, load safely, and resume inside an epoch.

Three pieces, used by :func:`lightly_mm_plugins.training.train`:

* :func:`atomic_torch_save` (and Lightning's side of it,
  :class:`~lightly_mm_plugins.training.callbacks.AtomicCheckpointIO`): every
  file is written to a temporary file *in the same folder*, flushed and ``fsync``-ed,
  then moved over the final name with :func:`os.replace` (atomic on POSIX and
  Windows), and the folder is ``fsync``-ed. A crash at any point leaves either
  the previous file or the new one at the final path, never a mix. Lightning's
  own ``_atomic_save`` is not enough: for a local path it goes through an
  ``fsspec`` transaction whose temporary file lives in the *system* temp
  folder, and the commit is ``shutil.move``, which copies (not renames) when
  that folder is on another file system, and nothing is ``fsync``-ed.
* :func:`load_checkpoint_file`: ``torch.load(weights_only=True)`` (no
  arbitrary code from a checkpoint), turning a truncated or foreign file into
  a :class:`~lightly_mm_plugins.errors.CheckpointError` that names the file
  and the fix.
* :class:`~lightly_mm_plugins.training.callbacks.RunCheckpoint`: writes
  ``last.ckpt`` at every epoch end and every ``every_n_steps`` training
  batches inside an epoch; together with the
  resumable training loader (see
  :class:`~lightly_mm_plugins.training.resumable.ResumableDataLoader`) a run
  killed anywhere continues to the same weights as an uninterrupted one.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "state.pt"
    >>> atomic_torch_save({"w": torch.ones(2)}, path)
    >>> load_checkpoint_file(path)["w"]
    tensor([1., 1.])
"""

from __future__ import annotations

import os
import pickle
import re
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

#: Temporary files are named ``.<final name>.<random>.tmp`` next to the final file.
TMP_SUFFIX = ".tmp"


def _tmp_path(path: Path) -> Path:
    return path.parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TMP_SUFFIX}"


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], None]) -> None:
    """Call ``write(binary_file)`` on a temporary file, then atomically rename it to ``path``.

    The temporary file is created next to ``path`` (so the rename never crosses
    file systems) with the usual ``0o666 & ~umask`` permissions, flushed and
    ``fsync``-ed before :func:`os.replace`; the folder is ``fsync``-ed after.
    If ``write`` or anything else fails, the temporary file is removed and
    ``path`` is untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(final)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(final.parent)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)`` that never leaves a half-written file at ``path``."""
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: str | os.PathLike[str]) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def remove_stale_tmp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files a killed writer left in ``folder``; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.glob(f".*{TMP_SUFFIX}") if p.is_file())
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def load_checkpoint_file(
    path: str | os.PathLike[str], map_location: Any = "cpu", what: str = "checkpoint"
) -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file and the fix.

    Raises:
        CheckpointError: ``path`` is missing, truncated or corrupt (a CRC-32
            check of every member of the zip archive, so flipped bytes are
            found), or holds objects other than tensors and plain Python data
            (a pickled class or function: refused, its code never runs).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(
            f"{what} {str(path)!r} is not a file; remove it (or point --out elsewhere)"
        )
    _check_integrity(path, what)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if not found:
            raise _corrupt(path, what, exc) from exc
        raise CheckpointError(
            f"{what} {str(path)!r} holds objects other than tensors and plain data (it needs "
            f"the Python object {found.group(1)!r}) and was refused: lightly-mm loads files "
            "with torch.load(weights_only=True) so that no code from a file runs. Resume only "
            "from checkpoints written by lightly-mm train, or start a new run without "
            "--resume / with another --out"
        ) from exc
    except Exception as exc:
        raise _corrupt(path, what, exc) from exc


def _corrupt(path: Path, what: str, exc: BaseException | None, detail: str = "") -> CheckpointError:
    size = path.stat().st_size
    if exc is not None and not detail:
        text = str(exc).strip()
        reason = text.splitlines()[0].split(". ")[0] if text else ""
        detail = f"{type(exc).__name__}{': ' + reason if reason else ''}"
    return CheckpointError(
        f"{what} {str(path)!r} ({size} bytes) is truncated or corrupt and cannot be read "
        f"({detail}). Delete it (a run without it starts from scratch) or put back an intact "
        "copy, then run again"
    )


def _check_integrity(path: Path, what: str) -> None:
    """Verify the CRC-32 of every member of ``path`` (torch's zip format stores one).

    ``torch.load`` does not check them, so flipped bytes inside a tensor load
    without an error as wrong numbers (a NaN learning rate, garbage weights).
    Not a zip archive at all (random bytes, a cut-off file, torch's legacy
    format, which lightly-mm never writes): corrupt too.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise _corrupt(path, what, None, f"not a PyTorch zip archive: {exc}") from exc
    except Exception as exc:  # zlib errors of damaged compressed members
        raise _corrupt(path, what, exc) from exc
    if bad is not None:
        raise _corrupt(path, what, None, f"checksum mismatch in {bad!r}: bytes changed on disk")


def load_exported(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an ``encoders.pt`` written by ``lightly-mm train`` (``weights_only=True``).

    Returns the dict with ``encoders`` (modality -> state dict), ``objective``
    (state dict), ``method``, ``kinds`` (modality -> kind), ``image_encoder``
    and ``text_encoder``.

    Example:
        >>> state = load_exported("lightly_mm_runs/run/encoders.pt")  # doctest: +SKIP
        >>> encoder.load_state_dict(state["encoders"]["image"])  # doctest: +SKIP
    """
    state = load_checkpoint_file(path, what="exported weights file")
    if not isinstance(state, dict) or not {"encoders", "objective", "method"} <= set(state):
        raise CheckpointError(
            f"{str(path)!r} is not an encoders.pt written by lightly-mm train "
            "(expected the keys 'encoders', 'objective', 'method')"
        )
    return state
