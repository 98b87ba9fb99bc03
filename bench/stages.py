"""Time each stage of clvx in one process and print JSON: load, RFM, fit, scoring, segments, cross-sell,
then the RFM summary alone and a bare polars group-by over the same file (its floor).

    python bench/stages.py log.parquet [--cross-sell] [--memory] [--cpu]

With --memory, prints instead each stage's memory: the process's peak resident set
after the stage (MB), how much the stage raised that peak, and the resident set left
when it ended, so the stage that sets the run's peak is named before code is changed. With --cpu,
each stage's CPU seconds (user + sys, every thread of the process), which a machine
shared with other work inflates far less than wall time.
"""

import contextlib
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clv import threads  # noqa: E402

os.environ.update(threads.environment())  # as the command line does before polars and scikit-learn load

import polars as pl  # noqa: E402

from clv.load import load_transactions  # noqa: E402
from clv.rfm import collect, rfm_summary  # noqa: E402
from segments import _sklearn  # noqa: E402
from segments.pipeline import run_crosssell, run_segmentation  # noqa: E402

_sklearn.lean = True  # as in the command line's process

times: dict[str, float] = {}
memory: dict[str, dict[str, float]] = {}
cpu: dict[str, float] = {}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def resident_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**2


@contextlib.contextmanager
def step(name: str, total: float | None = None):
    start, peak_before, cpu_before = time.perf_counter(), peak_mb(), cpu_seconds()
    yield
    times[name] = time.perf_counter() - start
    cpu[name] = cpu_seconds() - cpu_before
    memory[name] = {"peak_mb": peak_mb(), "raised_peak_mb": peak_mb() - peak_before, "resident_after_mb": resident_mb()}


with step("Reading and checking the log"):
    tx = load_transactions(sys.argv[1])
if "--cross-sell" in sys.argv:
    run_crosssell(tx, step=step)
else:
    run_segmentation(tx, step=step)
if "--memory" in sys.argv:
    print(json.dumps(memory))
    sys.exit(0)
if "--cpu" in sys.argv:
    print(json.dumps(cpu))
    sys.exit(0)

# The RFM summary alone, as `clvx rfm` computes it (the pipeline's RFM step also counts orders).
start = time.perf_counter()
collect(rfm_summary(tx.frame, tx.as_of))
times["RFM summary alone (clvx rfm)"] = time.perf_counter() - start

# The floor for RFM: one bare polars group-by per customer over the same file.
start = time.perf_counter()
(
    pl.scan_parquet(sys.argv[1])
    .filter(pl.col("customer_id").is_not_null())
    .group_by("customer_id")
    .agg(pl.len(), pl.col("date").min().alias("first"), pl.col("date").max().alias("last"), (pl.col("price") * pl.col("quantity")).sum())
    .collect(engine="streaming")
)
times["bare polars group_by (reference)"] = time.perf_counter() - start
print(json.dumps(times))
