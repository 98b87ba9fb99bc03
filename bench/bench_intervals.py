"""Benchmark: per-customer prediction intervals beyond the fit, and the holdout diagnostics.

    python bench/bench_intervals.py --customers 1000000 --period day

Uses the sample log bench_models.py caches (bench/work/), fits the purchase model (--model, BG/NBD by default) once, then times
:func:`clv.intervals.prediction_intervals` (parameter draws, survival tables, quantiles) at a
90% level over 12 months. Prints both wall and CPU seconds: on a shared machine the wall
clock measures the neighbours too. Not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_models import machine, sample_log  # noqa: E402

from clv import intervals  # noqa: E402
from clv.load import load_transactions  # noqa: E402
from clv.models import Horizon, purchase_estimator  # noqa: E402
from clv.rfm import Period, collect, rfm_summary  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--period", choices=[p.value for p in Period], default="day")
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--model", choices=["bgnbd", "mbgnbd", "pareto"], default="bgnbd")
    args = parser.parse_args()
    period = Period(args.period)

    tx = load_transactions(sample_log(args.customers, args.seed))
    summary = collect(rfm_summary(tx.frame, tx.as_of, period))
    bg = purchase_estimator(args.model, engine="numpy").fit(summary).params_
    x, tx_, T = (summary[c].cast(pl.Float64).to_numpy() for c in ("frequency", "recency", "T"))
    ones = np.ones_like(x)
    wall, cpu = time.perf_counter(), time.process_time()
    ci = intervals.prediction_intervals(
        args.model, bg.params, x, tx_, T, t=Horizon.parse("12m").periods(period.days), level=args.level,
        expected_purchases=ones, clv=ones,
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    load = os.getloadavg()[0]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{bg.label} intervals ({args.level:.0%}, 12 months) for {summary.height:,} customers, {bg.n_distinct:,} distinct rows, "
          f"parameter uncertainty: {ci.draws.method} ({ci.draws.n_draws} draws); {machine()}; load average {load:.1f}")
    print(f"| stage | wall s | CPU s | peak memory of the process (MB) |\n|---|---:|---:|---:|\n"
          f"| prediction intervals beyond the fit | {wall:.2f} | {cpu:.2f} | {peak_mb:,.0f} |")


if __name__ == "__main__":
    main()
