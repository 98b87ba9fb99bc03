"""A wide catalogue: 2,000,000 distinct products bought by 2,000 customers, for `clvx cross-sell`.

    python bench/wide.py [--products 2000000] [--customers 2000] [--output bench/work/wide.parquet]

Each customer buys 50 lines from 1,000 popular products (Zipf-like popularity, so
popular pairs are co-owned often) and an equal share of the long tail, where every
product is bought once and one in a hundred a second time by another customer. Most
of the catalogue is therefore owned by one customer and can be in no pair; the pairs
worth counting are few. Prints the file's path; the file is cached.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
POPULAR = 1_000
POPULAR_LINES = 50
SECOND_OWNER_SHARE = 0.01
LINES_PER_ORDER = 4


def wide_log(n_products: int, n_customers: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    tail = rng.permutation(np.arange(POPULAR, n_products))
    tail_owner = np.arange(len(tail)) % n_customers
    again = rng.random(len(tail)) < SECOND_OWNER_SHARE
    tail_owner2 = (tail_owner[again] + rng.integers(1, n_customers, size=int(again.sum()))) % n_customers
    weights = 1.0 / np.arange(1, POPULAR + 1)
    popular = rng.choice(POPULAR, size=n_customers * POPULAR_LINES, p=weights / weights.sum())
    popular_owner = np.repeat(np.arange(n_customers), POPULAR_LINES)
    customer = np.concatenate([tail_owner, tail_owner2, popular_owner])
    product = np.concatenate([tail, tail[again], popular])
    order = np.arange(len(customer)) // LINES_PER_ORDER
    day = rng.integers(0, 365, size=len(customer))
    return pl.DataFrame({
        "customer_id": customer.astype(np.int64),
        "order_id": order.astype(np.int64),
        "product_id": product.astype(np.int64),
        "quantity": np.ones(len(customer), dtype=np.int64),
        "price": np.round(rng.uniform(1, 50, size=len(customer)), 2),
        "day": day,
    }).select(
        pl.format("C{}", "customer_id").alias("customer_id"),
        pl.format("O{}-{}", "customer_id", "order_id").alias("order_id"),
        (pl.lit(dt.date(2024, 1, 1)) + pl.duration(days="day")).alias("date"),
        pl.format("P{}", "product_id").alias("product_id"),
        "quantity", "price",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=2_000_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    path = args.output or ROOT / "bench" / "work" / f"wide_{args.products}_{args.customers}.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        wide_log(args.products, args.customers).write_parquet(path)
    print(path)


if __name__ == "__main__":
    main()
