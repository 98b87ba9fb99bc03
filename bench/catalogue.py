"""A large customer base over a large catalogue: 1,000,000 customers x 50,000 products, for `clvx cross-sell`.

    python bench/catalogue.py [--customers 1000000] [--products 50000] [--run]
    python bench/catalogue.py --customers 100000 --run    # the same catalogue, a tenth of the customers (2 minutes)

Writes (and caches) a `clvx sample` log (customers, orders, dates: about 11 lines per
customer) whose products are redrawn from a catalogue the size of a department store's:
products have Zipf-like popularity and belong to themes of 10 (a customer favours two
themes, so products of a theme are bought together, as complements are). Prints
the file's path; with ``--run``, also runs ``clvx cross-sell LOG --targets`` on it in a
child process and prints one JSON line: wall and CPU seconds, peak resident memory (MB),
offers written. This is the size at which an item model with a dense products x products
inverse (EASE) needs 20 GB for its Gram matrix alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work"
THEME_SIZE = 10
THEME_SHARE = 0.5  # of a customer's lines from their favourite themes; the rest by overall popularity
ZIPF_EXPONENT = 1.1


def catalogue_log(sample: pl.DataFrame, n_products: int, seed: int = 0) -> pl.DataFrame:
    """``sample``'s customers, orders, dates and quantities (a `clvx sample` log), each line's
    product redrawn from a catalogue of ``n_products``: from one of the customer's two
    favourite themes with probability THEME_SHARE, else by Zipf-like popularity."""
    rng = np.random.default_rng(seed)
    codes = sample["customer_id"].fill_null("").rank("dense").cast(pl.Int64).to_numpy() - 1  # lines with no customer: one code
    n, n_customers = len(codes), int(codes.max()) + 1
    weights = 1.0 / np.arange(1, n_products + 1) ** ZIPF_EXPONENT
    cdf = np.cumsum(weights / weights.sum())
    popular = rng.permutation(n_products)[np.searchsorted(cdf, rng.random(n), side="right").clip(0, n_products - 1)]
    favourite = rng.integers(0, n_products // THEME_SIZE, size=(n_customers, 2))
    themed = favourite[codes, rng.integers(0, 2, size=n)] * THEME_SIZE + rng.integers(0, THEME_SIZE, size=n)
    product = np.where(rng.random(n) < THEME_SHARE, themed, popular)
    price = np.round(np.exp(rng.normal(2.0, 0.8, size=n_products)), 2)[product]
    return sample.select("customer_id", "order_id", "date", "quantity").with_columns(
        pl.format("P{}", pl.Series(product).cast(pl.String).str.pad_start(6, "0")).alias("product_id"),
        pl.format("cat{}", pl.Series(product // THEME_SIZE % 50)).alias("category"),
        pl.Series("price", price),
    )


def cached(n_customers: int, n_products: int) -> Path:
    path = WORK / f"catalogue_{n_customers}_{n_products}.parquet"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        base = WORK / f"catalogue_sample_{n_customers}.parquet"
        if not base.exists():
            subprocess.run([sys.executable, "-c", "import cli; cli.main()", "sample", "--customers", str(n_customers), "--seed", "1",
                            "--output", str(base), "-q"], check=True, cwd=ROOT)
        tmp = path.with_suffix(".tmp")
        catalogue_log(pl.read_parquet(base), n_products).write_parquet(tmp)
        tmp.replace(path)
    return path


def run(log: Path) -> dict:
    """``clvx cross-sell LOG --targets`` in a child process: wall, CPU, peak RSS of the child."""
    out = WORK / "catalogue_offers.csv"
    out.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import cli; cli.main()", "cross-sell", str(log), "--targets", str(out), "-q"], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    offers = pl.scan_csv(out).select(pl.len()).collect().item()
    return {"log": log.name, "wall_s": round(wall, 1), "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
            "peak_rss_mb": round(after.ru_maxrss / 1024), "offers": offers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--run", action="store_true", help="also run clvx cross-sell --targets on it and print its cost")
    args = parser.parse_args()
    log = cached(args.customers, args.products)
    print(log)
    if args.run:
        print(json.dumps(run(log)))


if __name__ == "__main__":
    main()
