"""Writing output files without ever costing the user data.

Three rules, applied to every file clvx writes:

* **Checked before any work.** :func:`check_outputs` refuses an output that is one of the
  run's inputs (compared as files: symlinks, hard links and ``./a`` vs ``a`` are the same
  file), two outputs of one run on the same file, a missing folder or a directory, before
  a single row is read.
* **All or nothing.** Inside :func:`transaction`, each write goes to a temporary file beside
  its target; only when the whole command has succeeded are the temporary files renamed
  over their targets. A failed or interrupted run changes no file and leaves no temporary
  file behind. Outputs that stand on their own (the formats of one report) can opt out
  with :func:`fail_after_commit`: the others are written, then the command fails naming
  the one that could not be.
* **Atomic where a file can be replaced, written through where it cannot.** A regular
  file is replaced by rename (a reader, or a concurrent run, sees one complete output). A
  symlink keeps pointing where it did and its target is replaced. A character device, FIFO
  or socket (``/dev/null``, ``/dev/stdout``, ``-o >(gzip > x.gz)``) is written to, never
  renamed over. ``-`` means standard output.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from clv.errors import ClvxError, InputError

STDOUT = "-"
TEMP_PREFIX = ".clvx-"
TEMP_SUFFIX = ".tmp"


class OutputError(ClvxError):
    """An output file could not be written (full or read-only disk, permissions): a runtime failure."""


def is_stdout(path: Path | str | None) -> bool:
    return path is not None and str(path) == STDOUT


def discard(stream: TextIO) -> None:
    """Point ``stream`` (stdout or stderr) at /dev/null: what is still to be written to it,
    Python's final flush included, goes nowhere and cannot fail a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)


def reader_gone() -> None:
    """The reader of stdout (``| head``) closed the pipe: it has what it wanted, which is no failure.

    The rest of stdout is discarded and the command goes on: its files are written and it
    exits with 0, as a short output that fits the pipe's buffer (and never meets the closed
    pipe) does.
    """
    discard(sys.stdout)


# --------------------------------------------------------------------------- identity


def _identity(path: Path) -> tuple:
    """What makes two paths the same file: device and inode when it exists, else the real path."""
    if is_stdout(path):
        return ("stdout",)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ("path", os.path.realpath(os.path.abspath(path)))
    except OSError as exc:
        raise InputError(f"cannot use {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
        return ("special", st.st_dev, st.st_ino)  # /dev/null twice is fine
    return ("inode", st.st_dev, st.st_ino)


def same_file(a: Path | str, b: Path | str) -> bool:
    return _identity(Path(a)) == _identity(Path(b))


@dataclass(frozen=True)
class Output:
    """An output of a run: the flag that names it (for messages) and its path."""

    flag: str
    path: Path
    makes_folder: bool = False  # the command creates the file's folder (clvx sample --truth)

    def __str__(self) -> str:
        return f"{self.flag} {self.path}"


def check_outputs(outputs: Sequence[Output], inputs: Sequence[tuple[str, Path]] = ()) -> None:
    """Refuse, before any work, outputs that would destroy an input or each other.

    ``inputs`` are ``(what, path)`` pairs, e.g. ``("INPUT", Path("sales.csv"))``. Raises
    :class:`InputError` naming both flags.
    """
    seen: dict[tuple, Output] = {}
    input_ids = {}
    for what, path in inputs:
        if path.exists():
            input_ids.setdefault(_identity(path), (what, path))
    for out in outputs:
        _check_target(out)
        ident = _identity(out.path)
        if ident in input_ids:
            what, path = input_ids[ident]
            same = "" if str(path) == str(out.path) else f" ({path})"
            raise InputError(
                f"{out.flag} {out.path} is the {what} file{same}; writing it would destroy the input: "
                f"choose another output name"
            )
        if ident in seen and ident[0] != "special":
            first = seen[ident]
            where = "standard output" if ident == ("stdout",) else str(out.path)
            raise InputError(
                f"{first.flag} and {out.flag} both write to {where}; give each output its own file"
            )
        seen[ident] = out


def _check_target(out: Output) -> None:
    path = out.path
    if is_stdout(path):
        return
    if path.is_dir():
        raise InputError(f"{out.flag} {path} is a directory; give a file name")
    folder = path.resolve().parent if path.is_symlink() else (path.parent if str(path.parent) else Path("."))
    if out.makes_folder and not folder.exists():
        folder = folder.parent
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{out.flag} {path}: '{folder}' is a file, not a folder")
    if not folder.is_dir():
        raise InputError(f"{out.flag} {path}: folder '{folder}' does not exist; create it first")
    if path.exists() and not _is_regular(path):
        return  # a device or FIFO: written through, the folder needs no write access
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{out.flag} {path}: folder '{folder}' is not writable")


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return True  # will be created as a regular file


# --------------------------------------------------------------------------- writing


@dataclass
class _Staged:
    target: Path
    tmp: Path
    stream: bool  # copy into the target (stdout, device, FIFO) instead of renaming over it


@dataclass
class _Transaction:
    staged: list[_Staged] = field(default_factory=list)
    written: list[Callable[[], None]] = field(default_factory=list)  # run once every file is in place
    failures: list[ClvxError] = field(default_factory=list)  # raised once the other files are in place


_active: list[_Transaction] = []


def _os_error(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or type(exc).__name__
    return OutputError(f"cannot write {path}: {reason}")


def _stage(path: Path, write: Callable[[Path], None]) -> _Staged:
    """Run ``write`` into a temporary file: beside the target, or in the temp folder for streams."""
    stream = is_stdout(path) or (path.exists() and not _is_regular(path))
    if stream:
        folder = Path(tempfile.gettempdir())
        target = path
    else:
        # A symlink stays a symlink: its target is what gets replaced.
        target = Path(os.path.realpath(path)) if path.is_symlink() else path
        folder = target.parent if str(target.parent) else Path(".")
        if target.is_dir():
            raise InputError(f"cannot write {path}: it is a directory")
        if not folder.is_dir():
            raise InputError(f"cannot write {path}: folder '{folder}' does not exist")
    try:
        # A short fixed prefix, so a target name near the file-name limit still has a temporary name.
        fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=folder)
        os.close(fd)
    except OSError as exc:
        raise _os_error(path, exc) from exc
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        if not stream:
            if target.exists():
                os.chmod(tmp, target.stat().st_mode & 0o777)
            else:
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp, 0o666 & ~umask)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _os_error(path, exc) from exc
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        cause = _os_cause(exc)
        if cause is None:
            raise
        raise _os_error(path, cause) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _Staged(target, tmp, stream)


def _os_cause(exc: BaseException) -> OSError | None:
    """The OSError behind a library's own exception (xlsxwriter wraps a full disk in FileCreateError)."""
    for candidate in (exc.__cause__, exc.__context__, *getattr(exc, "args", ())):
        if isinstance(candidate, OSError):
            return candidate
    return None


def _commit(item: _Staged) -> None:
    try:
        if not item.stream:
            os.replace(item.tmp, item.target)
            return
        with item.tmp.open("rb") as src:
            if is_stdout(item.target):
                out = sys.stdout
                if out is None:
                    raise OutputError("cannot write the output: stdout is closed; write to a file with --output PATH")
                out.flush()
                shutil.copyfileobj(src, out.buffer)
                out.flush()
            else:
                with open(item.target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except OSError as exc:
        if not (isinstance(exc, BrokenPipeError) and is_stdout(item.target)):  # an output pipe (-o >(gzip > x.gz)) that stopped reading lost data
            raise _os_error(item.target, exc) from exc
        reader_gone()
    finally:
        item.tmp.unlink(missing_ok=True)


def atomic_write(path: Path | str, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` for a temporary file, then put it in place of ``path``.

    Inside :func:`transaction` the file is put in place when the transaction ends
    successfully; outside one, at once.
    """
    try:
        staged = _stage(Path(path), write)
    except OutputError as exc:
        if _active:  # nothing of this run has been put in place yet
            raise OutputError(f"{exc.marked}; no file was changed") from exc
        raise
    if _active:
        _active[-1].staged.append(staged)
    else:
        _commit(staged)


def when_written(callback: Callable[[], None]) -> None:
    """Run ``callback`` (e.g. "Wrote offers.csv") once the files are really in place: at once outside a transaction."""
    if _active:
        _active[-1].written.append(callback)
    else:
        callback()


def fail_after_commit(error: ClvxError) -> None:
    """Let the other outputs of this run be written, then fail with ``error`` (at once outside a transaction)."""
    if not _active:
        raise error
    _active[-1].failures.append(error)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


@contextmanager
def transaction() -> Iterator[None]:
    """Hold back every file written inside until the block succeeds; on failure write none."""
    tx = _Transaction()
    _active.append(tx)
    try:
        yield
    except BaseException:
        for item in tx.staged:
            item.tmp.unlink(missing_ok=True)
        raise
    finally:
        _active.remove(tx)
    done: list[Path] = []
    for i, item in enumerate(tx.staged):
        try:
            _commit(item)
        except BaseException as exc:
            for rest in tx.staged[i + 1:]:
                rest.tmp.unlink(missing_ok=True)
            if isinstance(exc, ClvxError) and done:
                raise type(exc)(f"{exc.marked}; already written: {', '.join(map(str, done))}") from exc
            raise
        done.append(item.target)
    for callback in tx.written:
        callback()
    if tx.failures:
        first = tx.failures[0]
        text = "; ".join(f.marked for f in tx.failures)
        raise type(first)(f"{text}; written: {', '.join(map(str, done))}" if done else text)
