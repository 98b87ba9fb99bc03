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
  (:func:`limits`): k-means and the model fits run on one thread each, since their
  work is too small per call for a pool to pay (below);
- asks, before those libraries load, for OpenMP threads that sleep rather than spin
  when idle, for polars' pool size, and for a polars allocator that gives freed memory
  back (:func:`environment`; polars reads its size and its allocator's options when it
  is imported, so only an entry point that runs before any import can set them).

Nothing here reads or writes data; :func:`environment` returns variables, the caller
(the command line, a test session) decides to set them.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, ParamSpec, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future

from clv.errors import InputError, option

THREADS_ENV = "CLVX_THREADS"
MAX_THREADS = 1024
POLARS_THREADS_ENV = "POLARS_MAX_THREADS"
# libgomp and LLVM's OpenMP: idle threads block instead of spinning (read when the library loads).
OPENMP_WAIT_ENV = "OMP_WAIT_POLICY"
OPENMP_WAIT_POLICY = "PASSIVE"
# polars' allocator (jemalloc, prefixed `_rjem_` in its build) reads its options from this variable when
# polars loads; polars' __init__ puts its own defaults first and ours after them, so ours win.
ALLOCATOR_ENV = "_RJEM_MALLOC_CONF"
ALLOCATOR_DECAY_MS = 300

_threads: ContextVar[int | None] = ContextVar("clvx_threads", default=None)

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


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
def limits(threads: int | None = None, *, blas: int | None = None, openmp: int | None = None) -> Iterator[int]:
    """Cap the OpenMP and BLAS pools loaded now at :func:`resolve`'s count while the block runs.

    ``blas`` and ``openmp`` cap one pool lower (1: the caller's own thread). Enter it
    after importing the library whose pool it should cap (threadpoolctl sees only the
    libraries already loaded).
    """
    from threadpoolctl import threadpool_limits

    n = resolve(threads)
    caps = {"openmp": n if openmp is None else min(n, openmp), "blas": n if blas is None else min(n, blas)}
    with threadpool_limits(limits=n if blas is None and openmp is None else caps):
        yield n


def limited(
    load: Callable[[], object] | None = None, *, blas: int | None = None, openmp: int | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function to run inside :func:`limits` (``blas`` and ``openmp`` as there), after ``load()`` has
    imported the libraries whose pools it should cap."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if load is not None:
                load()
            with limits(blas=blas, openmp=openmp):
                return fn(*args, **kwargs)

        return wrapper

    return decorate


def ordered_map(fn: Callable[[T], R], items: Iterable[T], threads: int | None = None) -> Iterator[R]:
    """``map(fn, items)`` on :func:`resolve`'s count of threads, the results in the order of ``items``.

    For blocks of numpy and scipy work, which release the GIL while they compute: at most
    ``threads`` blocks are alive at once (those computing and the one handed back), so
    memory grows by that many blocks' results and no more. Each result is the same
    whatever thread computed it, and a caller that folds them in the order given gets the
    same bits as a loop. Each block runs in a copy of the caller's context (its
    :func:`use`).
    """
    n = resolve(threads)
    if n <= 1:
        yield from map(fn, items)
        return
    from concurrent.futures import ThreadPoolExecutor  # here, not at start-up: `clvx --help` never loads it

    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="clvx-block") as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(contextvars.copy_context().run, fn, item))
            if len(pending) >= n:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


@contextlib.contextmanager
def beside(fn: Callable[[], R], threads: int | None = None) -> Iterator[Callable[[], R]]:
    """Run ``fn`` on a thread of its own while the block runs; the block gets a function that waits for its result.

    For a polars query (which releases the GIL) beside numpy work that uses one core: on
    two cores the two overlap. With one thread (:func:`resolve`), ``fn`` runs at once, in
    the caller's thread, before the block. The thread is waited for when the block ends,
    however it ends; ``fn`` runs in a copy of the caller's context (its :func:`use`).
    """
    if resolve(threads) <= 1:
        value = fn()
        yield lambda: value
        return
    from concurrent.futures import ThreadPoolExecutor  # here, not at start-up: `clvx --help` never loads it

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clvx-beside") as pool:
        future = pool.submit(contextvars.copy_context().run, fn)
        yield future.result


def allocator_options(threads: int) -> str:
    """jemalloc options for polars: freed pages go back to the system within ``ALLOCATOR_DECAY_MS``.

    polars asks jemalloc to return freed pages after 0.5 s (and 1 s more in a second,
    "muzzy" stage), in one arena per 4 threads per CPU; but jemalloc returns them only
    while the process allocates through it again. A clvx run frees its group-by tables
    and then spends seconds in numpy, scipy and scikit-learn, which allocate elsewhere:
    polars' freed pages stayed resident under theirs and set the run's peak. A
    background thread returns them (``muzzy_decay_ms:0``: in one stage), and one arena
    per polars thread lets a query reuse pages another thread freed. ``clvx segment`` on
    3M lines: peak 466-501 -> 421-431 MB at the same CPU (bench/results.md).
    """
    return f"background_thread:true,dirty_decay_ms:{ALLOCATOR_DECAY_MS},muzzy_decay_ms:0,narenas:{threads}"


def environment(threads: int | None = None, current: dict[str, str] | None = None) -> dict[str, str]:
    """Variables to set before polars, numpy or scikit-learn are imported, leaving alone any the user set.

    ``POLARS_MAX_THREADS`` (polars' pool, fixed at import), ``OMP_WAIT_POLICY=PASSIVE``
    (idle OpenMP threads sleep instead of spinning on a core another process needs) and
    ``_RJEM_MALLOC_CONF`` (:func:`allocator_options`). ``current`` is the environment to
    compare with (default ``os.environ``).
    """
    env = os.environ if current is None else current
    n = resolve(threads)
    wanted = {POLARS_THREADS_ENV: str(n), OPENMP_WAIT_ENV: OPENMP_WAIT_POLICY, ALLOCATOR_ENV: allocator_options(n)}
    return {name: value for name, value in wanted.items() if not env.get(name)}
