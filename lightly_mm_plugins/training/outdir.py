"""The run folder (``--out``): one run per folder, one process at a time.

The convention (README, "Run folders"):

* A **new run** needs an empty ``--out`` (or one that does not exist). A folder
  that holds anything is refused, naming the two ways on: ``--resume``
  continues the run there, ``--overwrite`` deletes that run's outputs
  (:data:`RUN_OUTPUTS`, nothing else) and starts a new one.
* ``--resume`` continues from ``checkpoints/last.ckpt``; with no checkpoint it
  says so and starts fresh (removing only the logs of the attempt that never
  wrote one; a folder with a finished run's ``encoders.pt`` / ``metrics.json``
  but no checkpoint is refused).
* A **lock file** ``.lightly-mm.lock`` (pid, host, start time) is held for the
  whole run: a second run into the same folder is refused while the first
  runs. A lock left by a killed run (same host, process gone) is stale: it is
  reported and replaced. A lock from another host cannot be checked and is
  refused with the path to delete.

So ``logs/`` only ever holds the segments of the run in the folder (its first
part and every resumed part), which is what the loss curve plots.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "run"
    >>> with claim_run_folder(folder, resume=False, overwrite=False) as state:
    ...     state.fresh, (folder / LOCK_NAME).exists()
    (True, True)
    >>> (folder / LOCK_NAME).exists()
    False
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LightlyMMError
from .checkpointing import remove_stale_tmp_files

LOCK_NAME = ".lightly-mm.lock"

#: What ``lightly-mm train`` writes into a run folder (``--overwrite`` deletes these only).
RUN_OUTPUTS = (
    "checkpoints",
    "logs",
    "tensorboard",
    "batch_trace",
    "encoders.pt",
    "metrics.json",
    "config.yaml",
    "loss_curve.png",
    "results.png",
)

#: Outputs of an attempt that never wrote a checkpoint (nothing to resume from).
_ATTEMPT_OUTPUTS = ("logs", "tensorboard", "batch_trace")


class RunFolderError(ConfigError):
    """``--out`` holds another run, or another process is writing to it."""


@dataclass
class RunFolder:
    """A claimed run folder. ``fresh``: a new run (no checkpoint to continue)."""

    path: Path
    fresh: bool

    @property
    def last_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "last.ckpt"


def is_launched_worker() -> bool:
    """True in the processes Lightning's ``ddp`` launcher starts for ranks > 0.

    They run the same command again; the folder is the launching process's, so
    they neither check nor lock it.
    """
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


@contextlib.contextmanager
def claim_run_folder(
    out: str | os.PathLike[str], *, resume: bool, overwrite: bool, quiet: bool = False
) -> Iterator[RunFolder]:
    """Lock ``out`` for this process and check it may be used (see the module doc).

    Raises:
        RunFolderError: the folder holds another run (names ``--resume`` and
            ``--overwrite``), or another live process holds its lock.
        ConfigError: ``--resume`` together with ``--overwrite``.
        LightlyMMError: the folder cannot be written.
    """
    if resume and overwrite:
        raise ConfigError(
            "--resume and --overwrite contradict each other: --resume continues the run in "
            "--out, --overwrite deletes it; pass one"
        )
    path = Path(out)
    last = path / "checkpoints" / "last.ckpt"
    if is_launched_worker():
        yield RunFolder(path, fresh=not (resume and last.exists()))
        return
    _make_writable(path)
    lock = _acquire_lock(path, quiet=quiet)
    try:
        remove_stale_tmp_files(path / "checkpoints")  # left by a run killed while writing
        fresh = not (resume and last.exists())
        if resume and fresh:
            _note(quiet, f"--resume: no checkpoint at {last}; starting a fresh run")
        _check_contents(path, resume=resume, overwrite=overwrite, fresh=fresh)
        yield RunFolder(path, fresh=fresh)
    finally:
        _release_lock(lock)


def check_run_folder(out: str | os.PathLike[str], *, resume: bool, overwrite: bool) -> None:
    """What :func:`claim_run_folder` would refuse, checked without changing anything
    (the CLI calls it before any work starts, so a refusal exits with status 2)."""
    if resume and overwrite:
        raise ConfigError(
            "--resume and --overwrite contradict each other: --resume continues the run in "
            "--out, --overwrite deletes it; pass one"
        )
    path = Path(out)
    if is_launched_worker() or not path.is_dir():
        return
    lock = path / LOCK_NAME
    if lock.exists():
        record = read_lock(lock)
        if not lock_is_stale(record, lock):
            raise _in_use(path, lock, record or {})
    fresh = not (resume and (path / "checkpoints" / "last.ckpt").exists())
    _check_contents(path, resume=resume, overwrite=overwrite, fresh=fresh, dry_run=True)


def _in_use(folder: Path, lock: Path, record: dict[str, Any]) -> RunFolderError:
    return RunFolderError(
        f"--out {folder} is in use by another lightly-mm run (pid {record.get('pid')} on "
        f"{record.get('host')}, started {record.get('started')}); wait for it to finish or "
        f"choose another --out (if no run uses the folder, delete {lock})"
    )


def _note(quiet: bool, message: str) -> None:
    if not quiet:
        print(message, file=sys.stderr)


def _make_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise LightlyMMError(
            f"cannot write to output directory {str(path)!r} ({exc.strerror or exc}); "
            "pass a writable --out"
        ) from exc


def _listing(names: list[str], path: Path) -> str:
    shown = [n + ("/" if (path / n).is_dir() else "") for n in sorted(names)[:6]]
    return ", ".join(shown) + (", ..." if len(names) > 6 else "")


def _check_contents(
    path: Path, *, resume: bool, overwrite: bool, fresh: bool, dry_run: bool = False
) -> None:
    entries = [p.name for p in path.iterdir() if p.name != LOCK_NAME]
    if not fresh or not entries:
        return
    ours = [n for n in entries if n in RUN_OUTPUTS]
    if dry_run and (overwrite or (resume and all(n in _ATTEMPT_OUTPUTS for n in entries))):
        return
    if overwrite:
        for name in ours:
            target = path / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        return
    if resume and all(n in _ATTEMPT_OUTPUTS for n in entries):
        for name in entries:  # logs of an attempt that never checkpointed
            shutil.rmtree(path / name, ignore_errors=True)
        return
    what = "another run's outputs" if ours else "files"
    raise RunFolderError(
        f"--out {path} is not empty (holds {what}: {_listing(entries, path)}); continue that "
        "run with --resume, delete its outputs with --overwrite, or choose another --out"
    )


# ---------------------------------------------------------------------------- lock file
def _lock_record() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv[:1] + sys.argv[1:8]),
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def read_lock(path: Path) -> dict[str, Any] | None:
    """The record in ``path`` (a lock file), or ``None`` if it is unreadable."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def lock_is_stale(record: dict[str, Any] | None, lock: Path | None = None) -> bool:
    """A lock of this host whose process is gone, or an unreadable lock file that is
    not brand new (a run that just created it may not have written it yet)."""
    if record is None:
        try:
            return lock is None or time.time() - lock.stat().st_mtime > 10
        except OSError:
            return True
    if record.get("host") != socket.gethostname():
        return False
    pid = record.get("pid")
    return not (isinstance(pid, int) and _pid_alive(pid))


def _acquire_lock(folder: Path, quiet: bool) -> Path:
    lock = folder / LOCK_NAME
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            record = read_lock(lock)
            if not lock_is_stale(record, lock):
                raise _in_use(folder, lock, record or {}) from None
            # Move the stale lock aside (atomic; only one of two racing runs wins it).
            aside = folder / f"{LOCK_NAME}.{uuid.uuid4().hex[:8]}.stale"
            with contextlib.suppress(FileNotFoundError):
                os.rename(lock, aside)
                aside.unlink()
                pid = record.get("pid") if record else "?"
                _note(quiet, f"removed the stale lock of a run that ended (pid {pid}) in {folder}")
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(_lock_record(), f)
        return lock
    raise RunFolderError(f"could not lock {lock}: another run keeps taking it")


def _release_lock(lock: Path) -> None:
    record = read_lock(lock)
    if record is not None and record.get("pid") == os.getpid():
        lock.unlink(missing_ok=True)
