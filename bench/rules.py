"""clvx's association rules against mlxtend's fpgrowth + association_rules on the UCI retail log, same minimum support.

    pip install '.[bench]'
    python bench/rules.py [--log online_retail.parquet] [--min-support 0.01] [--repeat 2]

Both start from the same customer x product ownership (a customer "has" a product once
they bought it; clvx's rules are customer level) and count every rule with support at
least ``--min-support``. Timed, in one process, fastest of ``--repeat``:

- clvx: ``pair_counts`` of the pairs that can pass the support, then the bounded rules
  (``strong_pairs``, ``association_rules``: counts, metrics and timing), no per-product cap;
- mlxtend: ``fpgrowth`` on the one-hot table (pandas, bool), then ``association_rules``
  (metric lift, threshold 0) with ``max_len=2``: exactly the pair rules clvx writes; with
  ``--any-size`` also with itemsets of any size, what a user runs by default (at support
  0.01 on customers that is many larger itemsets and takes minutes).

Checks that the pair rules agree: the same (antecedent, consequent) set and the same
support, confidence and lift. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
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


def fastest(repeat: int, fn):
    best, out = None, None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        took = (time.perf_counter() - wall, time.process_time() - cpu)
        best = took if best is None or took[0] < best[0] else best
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, default=RETAIL)
    parser.add_argument("--min-support", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--any-size", action="store_true", help="Also time mlxtend with itemsets of any size (minutes at 0.01)")
    args = parser.parse_args()
    import pandas as pd
    from mlxtend.frequent_patterns import association_rules as mlx_rules
    from mlxtend.frequent_patterns import fpgrowth

    tx = load_transactions(str(args.log), RETAIL_COLUMNS)
    own = build_ownership(_purchase_lines(tx))
    bounds = RuleBounds(min_support=args.min_support, min_lift=0.0, per_product=own.X.shape[1])

    least = max(2, int(np.ceil(args.min_support * own.X.shape[0] - 1e-9)))  # co-owners: only pairs that can pass are counted

    def clvx_rules() -> pl.DataFrame:
        return association_rules(own, strong_pairs(own, pair_counts(own, min_count=least), bounds))

    onehot = pd.DataFrame(own.X.toarray() > 0, columns=own.products.to_list())

    def mlxtend_rules(max_len: int | None) -> pd.DataFrame:
        frequent = fpgrowth(onehot, min_support=args.min_support, use_colnames=True, max_len=max_len)
        return mlx_rules(frequent, metric="lift", min_threshold=0.0)

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
        "speed_up_pairs": round(pair_wall / clvx_wall, 1), "speed_up_any_size": round(any_wall / clvx_wall, 1),
    }))


if __name__ == "__main__":
    main()
