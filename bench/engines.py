"""The RFM summary of one log by three engines: clvx's streaming polars, DuckDB and Spark local mode.

    pip install '.[bench,spark]'
    python bench/engines.py                      # 10M lines
    python bench/engines.py --lines 100000000    # 100M lines: about 3 GB of Parquet and much longer

Each engine reads the same Parquet log and writes the summary to Parquet, in a process of
its own (bench/measure.py: wall time and peak RSS). DuckDB and Spark run the SQL of
`clvx sql rfm`; all three summaries are checked to be identical. Spark's peak is the
Python driver's plus its JVM's own (VmHWM); the driver is given 4 GB. Do not run it under
`nice` on a shared machine: a niced process gets almost no CPU there, and the times mean
nothing. Appends a Markdown table to bench/results_engines.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
PY = sys.executable
COLUMNS = dict(price="price", quantity="quantity", order="order_id")

DUCKDB = """
import sys, duckdb
from clv.load import ColumnMapping
from clv.sql import Aggregate, Dialect, aggregate_sql
log, out, threads = sys.argv[1:4]
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
con.execute(f"CREATE VIEW sales AS SELECT * FROM read_parquet('{log}')")
sql = aggregate_sql(Aggregate.rfm, Dialect.duckdb, columns=ColumnMapping(**__COLUMNS__), table="sales")
con.execute(f"COPY ({sql}) TO '{out}' (FORMAT parquet)")
print(con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0])
""".replace("__COLUMNS__", repr(COLUMNS))

SPARK = """
import sys
from pyspark.sql import SparkSession
from clvx import spark as clv_spark
from clv.load import ColumnMapping
log, out, threads = sys.argv[1:4]
spark = (SparkSession.builder.master(f"local[{threads}]").config("spark.ui.enabled", "false")
         .config("spark.driver.memory", "4g").config("spark.sql.session.timeZone", "UTC").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
summary = clv_spark.aggregate(spark.read.parquet(log), "rfm", columns=ColumnMapping(**__COLUMNS__))
summary.write.mode("overwrite").parquet(out)
count = spark.read.parquet(out).count()
# The JVM is not reaped as this process's child, so read its own peak (VmHWM) before stopping it.
jvm = spark.sparkContext._gateway.proc.pid
peak_kb = next(int(line.split()[1]) for line in open(f"/proc/{jvm}/status") if line.startswith("VmHWM"))
print(count, peak_kb / 1024)
spark.stop()
""".replace("__COLUMNS__", repr(COLUMNS))


def run(*cmd: str) -> dict:
    out = subprocess.run([PY, "bench/measure.py", *cmd], capture_output=True, text=True, cwd=ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["returncode"] != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{result['stderr']}")
    return result


def log_file(lines: int) -> Path:
    """A log of about ``lines`` order lines: the bundled sample repeated with new customer ids.

    Copies keep the sample's dates, amounts and returns; each copy's customers are new
    (``<id>-<copy>``), so customers grow with lines as in a real log (10.9 lines each).
    Built with polars in seconds, where simulating a log this size takes many minutes.
    """
    import polars as pl

    from clv.sample import bundled_sample_path

    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"copies_{lines}.parquet"
    if not path.exists():
        sample = pl.read_parquet(bundled_sample_path())
        copies = -(-lines // sample.height)
        (pl.LazyFrame({"copy": list(range(copies))}).join(sample.lazy(), how="cross")
         .with_columns(pl.format("{}-{}", "customer_id", "copy").alias("customer_id"))
         .drop("copy").head(lines).sink_parquet(path))
    return path


def same(paths: list[Path]) -> bool:
    import polars as pl

    frames = [pl.read_parquet(str(p)).sort("customer_id") for p in paths]
    cols = frames[0].columns
    return all(f.select(cols).equals(frames[0]) for f in frames[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    log = log_file(args.lines)
    outs = {name: WORK / f"rfm_{name}_{args.lines}.parquet" for name in ("clvx", "duckdb", "spark")}
    results = {
        "clvx (polars streaming)": run(PY, "-c", "import cli; cli.main()", "rfm", str(log), "--price-col", "price", "--quantity-col",
                                       "quantity", "--no-scores", "-q", "-o", str(outs["clvx"])),
        "DuckDB (clvx sql rfm)": run(PY, "-c", DUCKDB, str(log), str(outs["duckdb"]), str(args.threads)),
        "Spark local mode (clvx.spark)": run(PY, "-c", SPARK, str(log), str(outs["spark"]), str(args.threads)),
    }
    jvm_mb = float(results["Spark local mode (clvx.spark)"]["last_line"].split()[1])
    results["Spark local mode (clvx.spark)"]["peak_mb"] += jvm_mb  # driver process + JVM
    identical = same([outs["clvx"], outs["duckdb"], outs["spark"] / "*.parquet"])
    load = os.getloadavg()
    lines = [
        f"\n{args.lines:,} order lines ({log.stat().st_size / 1e6:,.0f} MB Parquet), {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {args.threads} threads per engine; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        f"(1/5/15 min). Summaries identical: {identical}.\n",
        "| engine | time | peak RSS |",
        "|---|---:|---:|",
        *(f"| {name} | {r['seconds']:.1f} s | {r['peak_mb']:,.0f} MB |" for name, r in results.items()),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(ROOT / "bench" / "results_engines.md", "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
