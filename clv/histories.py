"""The histories a fit needs, as computed in a warehouse by ``clvx sql histories``.

Two kinds of rows with a count of customers, ``n_customers``: the distinct ``(frequency,
recency, T)`` of every customer (``monetary_value`` empty) for BG/NBD, and the distinct
``(frequency, monetary_value)`` of the repeat customers (``recency`` and ``T`` empty) for
Gamma-Gamma. Both likelihoods are sums over customers, so a fit on these rows with their
counts is the fit on the customers. They are expanded to one row per customer here (four
numbers each, no ids), which keeps the fitting code one path; a hundred million customers
take about 3 GB.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from clv.errors import InputError
from clv.load import ReadOptions, open_input, resolve_paths, scan_file, scan_input

HISTORY_COLUMNS = ("frequency", "recency", "T", "monetary_value", "n_customers")


def is_histories(source: str | Path, options: ReadOptions = ReadOptions(), *, exclude: Sequence[str | Path] = ()) -> bool:
    """True when the file holds histories (``clvx sql histories``): the summary's columns and ``n_customers``."""
    paths = resolve_paths(source, exclude=exclude)
    names = set(scan_file(paths[0], options).collect_schema().names())
    return set(HISTORY_COLUMNS) <= names and "customer_id" not in names


def load_histories(source: str | Path, options: ReadOptions = ReadOptions(), *, exclude: Sequence[str | Path] = ()) -> pl.DataFrame:
    """One row per customer (``frequency, recency, T, monetary_value``) rebuilt from the histories' counts.

    BG/NBD reads ``frequency, recency, T`` of every row; Gamma-Gamma reads ``frequency,
    monetary_value`` of the repeat customers, which are paired with the repeat histories
    in any order (neither model looks at both at once).
    """
    paths = resolve_paths(source, exclude=exclude)
    label = str(paths[0]) if len(paths) == 1 else str(source)
    frame = pl.concat([scan_input(open_input(p, options)) for p in paths], how="vertical_relaxed").select(
        pl.col("frequency", "recency", "T", "n_customers").cast(pl.Float64, strict=False),
        pl.col("monetary_value").cast(pl.Float64, strict=False),
    ).collect()
    counts = frame.filter(pl.col("monetary_value").is_null())
    spend = frame.filter(pl.col("recency").is_null() & pl.col("monetary_value").is_not_null())
    rules = [
        (frame.filter(pl.col("frequency").is_null()), "rows without a frequency"),
        (frame.filter(pl.col("n_customers").is_null() | (pl.col("n_customers") < 1) | (pl.col("n_customers") != pl.col("n_customers").round(0))),
         "n_customers values that are not whole numbers >= 1"),
        (frame.filter((pl.col("frequency") < 0) | (pl.col("frequency") != pl.col("frequency").round(0))), "frequencies that are not whole numbers >= 0"),
        (counts.filter(pl.col("recency").is_null() | pl.col("T").is_null() | (pl.col("recency") < 0) | (pl.col("T") < pl.col("recency"))),
         "histories without 0 <= recency <= T"),
        (spend.filter(pl.col("frequency") == 0), "spend rows with frequency 0 (spend rows are the repeat customers')"),
    ]
    for bad, what in rules:
        if bad.height:
            raise InputError(f"{label}: {bad.height:,} {what} (first: {bad.row(0, named=True)}); write the file with clvx sql histories")
    if counts.height == 0:
        raise InputError(f"{label}: no (frequency, recency, T) rows (monetary_value empty); write the file with clvx sql histories")
    per_x = counts.filter(pl.col("frequency") > 0).group_by("frequency").agg(pl.col("n_customers").sum()).sort("frequency")
    spend_x = spend.group_by("frequency").agg(pl.col("n_customers").sum()).sort("frequency")
    if not per_x.equals(spend_x):
        raise InputError(f"{label}: the spend rows do not count the same repeat customers per frequency as the (frequency, "
                         "recency, T) rows; both kinds of rows must come from the same clvx sql histories run")
    expand = lambda f, cols: f.select(pl.col(cols).repeat_by(pl.col("n_customers").cast(pl.UInt32))).explode(cols)  # noqa: E731
    # Both sides sorted by frequency, so each repeat customer's history meets a spend of the same frequency.
    bg = expand(counts.sort("frequency", "recency", "T"), ["frequency", "recency", "T"])
    gg = expand(spend.sort("frequency", "monetary_value"), ["frequency", "monetary_value"])
    n_once = bg.height - gg.height
    money = pl.concat([pl.zeros(n_once, pl.Float64, eager=True), gg["monetary_value"]]).alias("monetary_value")
    return bg.with_columns(money).select(
        pl.format("h{}", pl.int_range(pl.len())).alias("customer_id"),
        pl.col("frequency").cast(pl.Int64), "recency", "T", "monetary_value",
    )
