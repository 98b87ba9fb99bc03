"""How many threads clvx's numerical libraries may use, and the cap around each parallel step.

Three pools share the CPUs in one clvx run: polars' (Rust), the OpenMP threads of
scikit-learn's k-means, and the BLAS threads of numpy and scipy. Left alone, each sizes
itself to the whole machine, and OpenMP threads keep spinning on a core after every
parallel region. On a busy machine (a shared CI runner) those spinning threads compete
with the one doing the work, and a k-means that needs 5 s of CPU burns 16 s and runs
for minutes. So clvx

- sizes every pool to one number, ``threads``: set with :func:`use` (the command line's
  ``--threads``), else the ``CLVX_THREADS`` environment variable, else the CPUs this
  process may run on (``os.sched_getaffinity``, which honours ``taskset`` and cgroup
  cpusets, unlike ``os.cpu_count``);
- caps OpenMP and BLAS with threadpoolctl around each step that uses them
  (:func:`limits`): k-means, the model fits;
- asks, before those libraries load, for OpenMP threads that sleep rather than spin
  when idle, and for polars' pool size (:func:`environment`; polars reads its size
  when it is imported, so only an entry point that runs before any import can set it).

Nothing here reads or writes data; :func:`environment` returns variables, the caller
(the command line, a test session) decides to set them.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

from clv.errors import InputError, option

THREADS_ENV = "CLVX_THREADS"
MAX_THREADS = 1024
POLARS_THREADS_ENV = "POLARS_MAX_THREADS"
# libgomp and LLVM's OpenMP: idle threads block instead of spinning (read when the library loads).
OPENMP_WAIT_ENV = "OMP_WAIT_POLICY"
OPENMP_WAIT_POLICY = "PASSIVE"

_threads: ContextVar[int | None] = ContextVar("clvx_threads", default=None)

P = ParamSpec("P")
R = TypeVar("R")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def check(threads: object, where: str | None = None) -> int:
    """``threads`` as a whole number from 1 to ``MAX_THREADS``; ``where`` names its source in the error (default: the option)."""
    where = where or option("threads")
    if isinstance(threads, bool):
        raise InputError(f"{where} = {threads!r} is not a number of threads; give a whole number from 1 to {MAX_THREADS}")
    try:
        n = int(str(threads).strip()) if isinstance(threads, str) else int(threads)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise InputError(f"{where} = {threads!r} is not a number of threads; give a whole number from 1 to {MAX_THREADS}") from None
    if isinstance(threads, float) and threads != n:
        raise InputError(f"{where} = {threads!r} is not a whole number of threads; give a whole number from 1 to {MAX_THREADS}")
    if not 1 <= n <= MAX_THREADS:
        raise InputError(f"{where} = {n} is out of range; give a whole number of threads from 1 to {MAX_THREADS}")
    return n


def from_environment() -> int | None:
    """``CLVX_THREADS`` when it is set (and not empty), checked."""
    value = os.environ.get(THREADS_ENV, "").strip()
    return check(value, f"the environment variable {THREADS_ENV}") if value else None


def resolve(threads: int | None = None) -> int:
    """The thread count in force: ``threads``, else :func:`use`'s, else ``CLVX_THREADS``, else :func:`available_cpus`."""
    if threads is not None:
        return check(threads)
    return _threads.get() or from_environment() or available_cpus()


@contextlib.contextmanager
def use(threads: int | None) -> Iterator[int]:
    """Run the enclosed analyses with ``threads`` threads per pool (None: the default); yields the count."""
    n = resolve(threads)
    token = _threads.set(n)
    try:
        yield n
    finally:
        _threads.reset(token)


@contextlib.contextmanager
def limits(threads: int | None = None) -> Iterator[int]:
    """Cap the OpenMP and BLAS pools loaded now at :func:`resolve`'s count while the block runs.

    Enter it after importing the library whose pool it should cap (threadpoolctl sees
    only the libraries already loaded).
    """
    from threadpoolctl import threadpool_limits

    n = resolve(threads)
    with threadpool_limits(limits=n):
        yield n


def limited(load: Callable[[], object] | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function to run inside :func:`limits`, after ``load()`` has imported the libraries whose pools it should cap."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if load is not None:
                load()
            with limits():
                return fn(*args, **kwargs)

        return wrapper

    return decorate


def environment(threads: int | None = None, current: dict[str, str] | None = None) -> dict[str, str]:
    """Variables to set before polars, numpy or scikit-learn are imported, leaving alone any the user set.

    ``POLARS_MAX_THREADS`` (polars' pool, fixed at import) and ``OMP_WAIT_POLICY=PASSIVE``
    (idle OpenMP threads sleep instead of spinning on a core another process needs).
    ``current`` is the environment to compare with (default ``os.environ``).
    """
    env = os.environ if current is None else current
    wanted = {POLARS_THREADS_ENV: str(resolve(threads)), OPENMP_WAIT_ENV: OPENMP_WAIT_POLICY}
    return {name: value for name, value in wanted.items() if not env.get(name)}
