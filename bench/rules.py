"""clvx's association rules against mlxtend's fpgrowth + association_rules on the UCI retail log, same minimum support.

    pip install '.[bench]'
    python bench/rules.py [--log online_retail.parquet] [--min-support 0.01] [--repeat 2]

Both start from the same customer x product ownership (a customer "has" a product once
they bought it; clvx's rules are customer level) and count every rule with support at
least ``--min-support``. Two comparisons, each ratio from this one run:

The core, in one process, fastest of ``--repeat`` (CPU: user + sys of the process):

- clvx: ``pair_counts`` (co-owners only) of the pairs that can pass the support, then the bounded rules
  (``strong_pairs``, ``association_rules``: counts, metrics and timing), no per-product cap;
- mlxtend: ``fpgrowth`` on the one-hot table (pandas, bool), then ``association_rules``
  (metric lift, threshold 0) with ``max_len=2``: exactly the pair rules clvx writes; with
  ``--any-size`` also with itemsets of any size, what a user runs by default (at support
  0.01 on customers that is many larger itemsets and takes minutes).

The whole command, one child process each (wall, CPU of the child, peak RSS):

- clvx: ``clvx rules LOG -o rules.csv --min-support S --min-lift 0 --rules-per-product 1000
  -q``: reading and checking the log, ownership, pair counts, the bounded rules with their
  timing, the CSV (the file ``cross-sell --rules`` writes, without its segments and models);
- mlxtend: a script doing what a user does: read the log, keep purchase lines of known
  customers, one-hot table, ``fpgrowth(max_len=2)``, ``association_rules``, write a CSV.

Checks that the pair rules agree: the same (antecedent, consequent) set and the same
support, confidence and lift. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clv.load import load_transactions  # noqa: E402
from segments.associations import RuleBounds, association_rules, build_ownership, pair_counts, strong_pairs  # noqa: E402
from segments.pipeline import _purchase_lines  # noqa: E402

RETAIL = Path(__file__).resolve().parents[2] / "shared" / "data" / "online_retail.parquet"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from crosssell import RETAIL_COLUMNS  # noqa: E402
from run import ROOT, compiled  # noqa: E402


def fastest(repeat: int, fn):
    """The fastest (by CPU: what a shared machine inflates least) of ``repeat`` runs: (wall, CPU), and the result."""
    best, out = None, None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        took = (time.perf_counter() - wall, time.process_time() - cpu)
        best = took if best is None or took[1] < best[1] else best
    return best, out


MLXTEND_SCRIPT = """
import sys
import pandas as pd
from mlxtend.frequent_patterns import association_rules, fpgrowth
log, support, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
lines = pd.read_parquet(log, columns=["customer_id", "stock_code", "quantity", "price"])
lines = lines[lines["customer_id"].notna() & (lines["quantity"] * lines["price"] > 0)]
onehot = pd.crosstab(lines["customer_id"], lines["stock_code"]) > 0
frequent = fpgrowth(onehot, min_support=support, use_colnames=True, max_len=2)
association_rules(frequent, metric="lift", min_threshold=0.0).to_csv(out, index=False)
"""


def child(argv: list[str]) -> tuple[float, float, float]:
    """Wall and CPU seconds (user + sys) and peak RSS (MB) of one child process running ``argv``."""
    wall = time.perf_counter()
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1]) as proc:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{argv[:3]} failed with exit code {proc.returncode}")
    return time.perf_counter() - wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def whole_commands(log: Path, min_support: float) -> dict[str, float]:
    """The whole clvx command and the mlxtend script, one child process each (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        clvx = [sys.executable, "-c", "import cli; cli.main()", "rules", str(log), "--customer-col", "customer_id",
                "--date-col", "invoice_date", "--price-col", "price", "--quantity-col", "quantity", "--order-col", "invoice",
                "--product-col", "stock_code", "-o", f"{tmp}/clvx.csv",
                "--min-support", str(min_support), "--min-lift", "0", "--rules-per-product", "1000", "-q"]
        clvx_wall, clvx_cpu, clvx_mb = child(clvx)
        mlx_wall, mlx_cpu, mlx_mb = child([sys.executable, "-c", MLXTEND_SCRIPT, str(log), str(min_support), f"{tmp}/mlxtend.csv"])
        n_clvx = sum(1 for _ in open(f"{tmp}/clvx.csv")) - 1
        n_mlx = sum(1 for _ in open(f"{tmp}/mlxtend.csv")) - 1
    return {
        "command_clvx_rules": n_clvx, "command_mlxtend_rules": n_mlx,
        "command_clvx_s": round(clvx_wall, 2), "command_clvx_cpu_s": round(clvx_cpu, 2), "command_clvx_peak_mb": round(clvx_mb),
        "command_mlxtend_s": round(mlx_wall, 2), "command_mlxtend_cpu_s": round(mlx_cpu, 2), "command_mlxtend_peak_mb": round(mlx_mb),
        "command_speed_up": round(mlx_wall / clvx_wall, 1), "command_speed_up_cpu": round(mlx_cpu / clvx_cpu, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, default=RETAIL)
    parser.add_argument("--min-support", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--any-size", action="store_true", help="Also time mlxtend with itemsets of any size (minutes at 0.01)")
    parser.add_argument("--no-command", action="store_true", help="Skip the whole-command comparison (two child processes)")
    args = parser.parse_args()
    compiled(ROOT)
    import pandas as pd
    from mlxtend.frequent_patterns import association_rules as mlx_rules
    from mlxtend.frequent_patterns import fpgrowth

    tx = load_transactions(str(args.log), RETAIL_COLUMNS)
    own = build_ownership(_purchase_lines(tx))
    bounds = RuleBounds(min_support=args.min_support, min_lift=0.0, per_product=own.X.shape[1])

    least = max(2, int(np.ceil(args.min_support * own.X.shape[0] - 1e-9)))  # co-owners: only pairs that can pass are counted

    def clvx_rules() -> pl.DataFrame:
        return association_rules(own, strong_pairs(own, pair_counts(own, min_count=least, counts_only=True), bounds))

    onehot = pd.DataFrame(own.X.toarray() > 0, columns=own.products.to_list())

    def mlxtend_rules(max_len: int | None) -> pd.DataFrame:
        frequent = fpgrowth(onehot, min_support=args.min_support, use_colnames=True, max_len=max_len)
        return mlx_rules(frequent, metric="lift", min_threshold=0.0)

    # The whole commands first, while this process is small: children do not share its memory.
    commands = {} if args.no_command else whole_commands(args.log, args.min_support)
    (clvx_wall, clvx_cpu), ours = fastest(args.repeat, clvx_rules)
    (pair_wall, pair_cpu), theirs = fastest(args.repeat, lambda: mlxtend_rules(2))
    any_size = fastest(1, lambda: mlxtend_rules(None)) if args.any_size else ((float("nan"), float("nan")), [])
    (any_wall, any_cpu), theirs_any = any_size
    theirs = pl.DataFrame({
        "antecedent": [next(iter(a)) for a in theirs["antecedents"]], "consequent": [next(iter(c)) for c in theirs["consequents"]],
        "support_m": theirs["support"].to_numpy(), "confidence_m": theirs["confidence"].to_numpy(), "lift_m": theirs["lift"].to_numpy(),
    })
    both = ours.join(theirs, on=["antecedent", "consequent"], how="full", coalesce=True)
    agree = bool(
        both.height == ours.height == theirs.height
        and all(np.allclose(both[a].to_numpy(), both[b].to_numpy(), rtol=1e-9)
                for a, b in (("support", "support_m"), ("confidence", "confidence_m"), ("lift", "lift_m")))
    )
    print(json.dumps({
        "customers": own.X.shape[0], "products": own.X.shape[1], "min_support": args.min_support,
        "clvx_rules": ours.height, "mlxtend_pair_rules": theirs.height, "mlxtend_rules_any_size": len(theirs_any), "pair_rules_agree": agree,
        "clvx_s": round(clvx_wall, 2), "clvx_cpu_s": round(clvx_cpu, 2),
        "mlxtend_pairs_s": round(pair_wall, 2), "mlxtend_pairs_cpu_s": round(pair_cpu, 2),
        "mlxtend_any_size_s": round(any_wall, 2), "mlxtend_any_size_cpu_s": round(any_cpu, 2),
        "speed_up_pairs": round(pair_wall / clvx_wall, 1), "speed_up_pairs_cpu": round(pair_cpu / clvx_cpu, 1),
        "speed_up_any_size": round(any_wall / clvx_wall, 1), **commands,
    }))


if __name__ == "__main__":
    main()
