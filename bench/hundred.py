"""A 100M-line log as 10 Parquet files: the 10M-line benchmark log ten times, each copy with its own customers and orders.

    python bench/hundred.py [--copies 10]

Copy k prefixes customer and order ids with ``k-``, so the copies are distinct
customers with the same behaviour (the RFM summary is the 10M one, ten times over).
Writes bench/work/hundred/part-K.parquet and prints the glob to pass to clvx.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
SOURCE_LINES = 10_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=10)
    args = parser.parse_args()
    source = ROOT / "bench" / "work" / f"lines_{SOURCE_LINES}.parquet"
    if not source.exists():  # bench/run.py makes and caches it
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, 'bench'); import run; run.log_file({SOURCE_LINES})"],
                       cwd=ROOT, check=True)
    folder = ROOT / "bench" / "work" / "hundred"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(args.copies):
        part = folder / f"part-{k}.parquet"
        if part.exists():
            continue
        lf = pl.scan_parquet(source)
        ids = [c for c in ("customer_id", "order_id") if c in lf.collect_schema().names()]
        lf.with_columns(pl.format(f"{k}-{{}}", pl.col(c)).alias(c) for c in ids).sink_parquet(part)
    print(folder / "part-*.parquet")


if __name__ == "__main__":
    main()
