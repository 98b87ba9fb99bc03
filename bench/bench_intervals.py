"""Benchmark: per-customer prediction intervals beyond the fit, and the holdout diagnostics.

    python bench/bench_intervals.py --customers 1000000 --period day --model pareto

Uses the sample log bench_models.py caches (bench/work/), runs :func:`clvx.predict` on it once
without an interval (read, RFM, fit of the purchase model (--model, BG/NBD by default) and
Gamma-Gamma, scores), then times :func:`clv.intervals.prediction_intervals` on those scores as
``predict --interval`` calls it (parameter draws, survival tables, quantiles) at a 90% level over
12 months. Prints wall and CPU seconds of each stage and the process's peak memory after it: on
a shared machine the wall clock measures the neighbours too. Not a test.
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

import clvx  # noqa: E402
from clv import intervals  # noqa: E402
from clv.models import Horizon  # noqa: E402
from clv.rfm import Period  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--period", choices=[p.value for p in Period], default="day")
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--model", choices=["bgnbd", "mbgnbd", "pareto"], default="bgnbd")
    args = parser.parse_args()
    period = Period(args.period)

    path = sample_log(args.customers, args.seed)
    horizon = Horizon.parse("12m")
    stages = []

    def timed(label: str, fn):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        stages.append((label, time.perf_counter() - wall, time.process_time() - cpu,
                       resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
        return out

    result = timed("clvx.predict without an interval (read, RFM, fit, score)", lambda: clvx.predict(
        clvx.Source(input=path), model=clvx.ModelOptions(model=clvx.PurchaseModel(args.model), period=period, engine="numpy"),
        clv=clvx.CLVOptions(horizon=horizon)))
    bg, scores = result.purchase_model, result.scores
    x, tx_, T = (scores[c].cast(pl.Float64).to_numpy() for c in ("frequency", "recency", "T"))
    ci = timed("prediction intervals beyond it", lambda: intervals.prediction_intervals(
        args.model, bg.params, x, tx_, T, t=horizon.periods(period.days), level=args.level,
        expected_purchases=scores["expected_purchases"].to_numpy(), clv=scores["clv"].to_numpy(), seed=clvx.INTERVAL_SEED,
        known_covariance=None if bg.log_covariance is None else np.array(bg.log_covariance)))
    load = os.getloadavg()[0]
    print(f"{bg.label} intervals ({args.level:.0%}, 12 months) for {scores.height:,} customers, {bg.n_distinct:,} distinct rows, "
          f"parameter uncertainty: {ci.draws.method} ({ci.draws.n_draws} draws); {machine()}; load average {load:.1f}")
    print("| stage | wall s | CPU s | peak memory of the process after it (MB) |\n|---|---:|---:|---:|")
    for label, wall, cpu, peak_mb in stages:
        print(f"| {label} | {wall:.2f} | {cpu:.2f} | {peak_mb:,.0f} |")
    print(f"| clvx.predict with the interval (sum) | {sum(s[1] for s in stages):.2f} | {sum(s[2] for s in stages):.2f} "
          f"| {stages[-1][3]:,.0f} |")


if __name__ == "__main__":
    main()
