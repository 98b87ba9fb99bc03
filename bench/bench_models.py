"""Benchmark: fit each purchase model + Gamma-Gamma and score every customer, beside lifetimes alone.

    python bench/bench_models.py --customers 1000000 --period day --models bgnbd,mbgnbd,pareto

Generates the log with clvx's sample generator (cached under bench/work/), builds
the RFM summary, then times each model stage for clvx and, as the baseline,
lifetimes' own fitters on the same summary (uncompressed, as a notebook would call
them; lifetimes' Pareto/NBD, a Nelder-Mead search, on at most --baseline-customers of them). Prints
a Markdown table; --output writes it to a file too. Not a test: the
numbers depend on the machine, so they live in the README with the machine named.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clv import _lifetimes  # noqa: E402
from clv.load import load_transactions  # noqa: E402
from clv.models import GammaGamma, Horizon, purchase_estimator, score_customers  # noqa: E402
from clv.rfm import Period, collect, rfm_summary  # noqa: E402
from clv.sample import SampleSpec, generate  # noqa: E402

WORK = ROOT / "bench" / "work"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def sample_log(n_customers: int, seed: int) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"sample_{n_customers}_{seed}.parquet"
    if not path.exists():
        generate(SampleSpec(n_customers=n_customers, seed=seed)).transactions.write_parquet(path)
    return path


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, polars {pl.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--period", choices=[p.value for p in Period], default="day")
    parser.add_argument("--no-baseline", action="store_true", help="skip the lifetimes-only timings")
    parser.add_argument("--models", default="bgnbd,mbgnbd,pareto", help="comma-separated purchase models")
    parser.add_argument("--engine", default="numpy", choices=["auto", "lifetimes", "numpy"])
    parser.add_argument("--baseline-customers", type=int, default=23_570,
                        help="lifetimes' Pareto/NBD runs on the first this many customers (CDNOW's size)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    period = Period(args.period)

    log = sample_log(args.customers, args.seed)
    tx = load_transactions(log)
    summary = collect(rfm_summary(tx.frame, tx.as_of, period))
    rows = []

    gg_model, t_gg = timed(lambda: GammaGamma(engine=args.engine).fit(summary).params_)
    rows.append(("clvx", f"Gamma-Gamma fit ({gg_model.engine})", t_gg))
    x, tx_, T = (summary[c].cast(pl.Float64).to_numpy() for c in ("frequency", "recency", "T"))
    ones = np.ones_like(x)
    for name in args.models.split(","):
        est = purchase_estimator(name, engine=args.engine)
        model, t_fit = timed(lambda est=est: est.fit(summary).params_)
        _, t_score = timed(lambda model=model: score_customers(summary, model, gg_model, period_days=period.days,
                                                               horizon=Horizon.parse("12m")))
        rows.append(("clvx", f"{model.label} fit ({model.engine}, {model.n_distinct:,} distinct rows)", t_fit))
        rows.append(("clvx", f"{model.label}: p_alive, churn risk, expected purchases, CLV (12 months)", t_score))
        rows.append(("clvx", f"**{model.label} fit + predict** (+ Gamma-Gamma)", t_fit + t_score + t_gg))
        if args.no_baseline:
            continue
        n = len(x) if name != "pareto" else min(len(x), args.baseline_customers)
        fitter = getattr(_lifetimes, f"fit_{name}")
        raw, t_raw = timed(lambda fitter=fitter, n=n: fitter(x[:n], tx_[:n], T[:n], ones[:n]))
        rows.append(("lifetimes", f"{model.label} fitter (uncompressed, {n:,} customers)", t_raw))
        if n == len(x):
            rel = np.max(np.abs(np.array(model.params) / np.array(raw.params) - 1))
            print(f"clvx vs lifetimes {model.label} parameters: max relative difference {rel:.1e}", file=sys.stderr)
    if not args.no_baseline:
        rep = summary.filter((pl.col("frequency") > 0) & (pl.col("monetary_value") > 0))
        rx, rm = rep["frequency"].cast(pl.Float64).to_numpy(), rep["monetary_value"].to_numpy()
        _, t_lgg = timed(lambda: _lifetimes.fit_gamma_gamma(rx, rm, np.ones_like(rx)))
        rows.append(("lifetimes", "GammaGammaFitter.fit", t_lgg))

    lines = [
        f"Fit + predict on {summary.height:,} customers ({tx.quality.n_rows:,} order lines, period {period.value}); {machine()}",
        "",
        "| tool | stage | seconds |",
        "|---|---|---:|",
        *(f"| {tool} | {stage} | {secs:.2f} |" for tool, stage, secs in rows),
    ]
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
