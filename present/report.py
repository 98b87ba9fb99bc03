"""Reports for strategy meetings: one self-contained HTML file, an Excel workbook, Markdown.

An edge module like present.render: it turns results the core computed into files and
computes nothing new. Charts are matplotlib figures rendered to inline SVG (no
network needed to open the page), with a fixed hash salt and no timestamps so the
same input gives the same bytes. The workbook is written cell by cell with xlsxwriter:
text as text (never a formula or a link), numbers as numbers with number formats.

Data text (ids, product names, descriptions, categories, the title, the source name) is
untrusted: it is HTML-escaped in the page, Markdown- and HTML-escaped in Markdown, drawn
without mathtext in charts, and written as plain strings in the workbook.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import io
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from clv.diagnostics import HoldoutDiagnostics
from clv.errors import InputError
from clv.models import LOW_DROPOUT, MODEL_LABELS
from present import render
from present.output import atomic_write, atomic_write_bytes, column_kind, format_cell, terminal_text
from present.progress import excluded, kept
from segments.crosssell import SEGMENT_WEIGHT, CrossSellBacktest
from segments.pipeline import NEAR_TERM, ReportData

REPORT_SUFFIXES = (".html", ".htm", ".xlsx", ".md")
PALETTE = ("#1b4965", "#5fa8d3", "#62b6cb", "#bee9e8", "#cae9ff", "#ef8354", "#f4a261", "#8d99ae")
FREQUENCY_BINS = (0, 1, 2, 3, 5, 10)  # lower edges: 0, 1, 2, 3-4, 5-9, 10+
RECENCY_BINS_DAYS = (0, 30, 90, 180, 365, 730)
MAX_HEATMAP_PRODUCTS = 12
# A sheet holds at most this many rows of a table (Excel's own limit is 1,048,576), with a
# note under the table saying how many there were and how to export them all.
MAX_SHEET_ROWS = 100_000
FULL_EXPORTS = {
    "customer scores": "clvx predict INPUT -o scores.csv (or clvx segment INPUT --assignments a.csv)",
    "rules": "clvx cross-sell INPUT --rules rules.csv",
    "bundles": "clvx cross-sell INPUT --bundles bundles.csv",
}


def write_report(data: ReportData, path: Path) -> None:
    """Write the report in the format of ``path``'s extension."""
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        atomic_write_bytes(path, html_report(data).encode())
    elif suffix == ".xlsx":
        atomic_write(path, lambda tmp: xlsx_report(data, tmp))
    elif suffix == ".md":
        atomic_write_bytes(path, markdown_report(data).encode())
    else:
        raise InputError(f"cannot tell the report format of '{path}'; use .html, .xlsx or .md")


# --------------------------------------------------------------------------- numbers


def headline_numbers(data: ReportData) -> list[tuple[str, float, str, str]]:
    """(label, value, kind, note) for the four numbers at the top; kind is count, money or share."""
    c = data.customers
    active = (c["p_alive"] >= 0.5).mean()
    return [
        ("Customers", c.height, "count", f"with a purchase up to {data.as_of}"),
        ("Revenue", float(c["total_spend"].sum()), "money", "net of returns, over the log"),
        (f"Predicted CLV, {data.segments.horizon.words}", float(c["clv"].sum()), "money", f"discounted at {data.discount_rate:.0%} a year"),
        ("Likely still active", float(active), "share", "share of customers with P(alive) >= 0.5"),
    ]


HEADLINE_TEXT = {"count": "{:,}", "money": "{:,.0f}", "share": "{:.0%}"}
HEADLINE_EXCEL = {"count": "#,##0", "money": "#,##0", "share": "0%"}


def headline(data: ReportData) -> list[tuple[str, str, str]]:
    """(label, value, note) for the four numbers at the top, the value as text."""
    return [(label, HEADLINE_TEXT[kind].format(value), note) for label, value, kind, note in headline_numbers(data)]


MODEL_SOURCES = {"bgnbd": "Fader, Hardie & Lee 2005", "mbgnbd": "Batislam, Denizel & Filiztekin 2007",
                 "pareto": "Schmittlein, Morrison & Colombo 1987"}


def methodology(data: ReportData) -> list[tuple[str, str]]:
    bg, gg, q = data.segments.purchase_model, data.segments.gamma_gamma, data.quality
    seg = data.segments.segmentation
    if q is None:  # aggregates computed where the log lives: their SQL applied clvx's rules to the lines
        data_rows = [("Data", f"{data.source}: {data.columns}, to {data.as_of}"),
                     ("Excluded", "rows without a customer, dated after today, far before the rest or after the as-of date "
                                  "(clvx's rules, applied in the aggregates' SQL)")]
    else:
        data_rows = [
            ("Data", f"{data.source}: {q.n_rows:,} rows, {q.first_date.date() if q.first_date else '?'} to {data.as_of}; columns {data.columns}"),
            ("Excluded", "; ".join(excluded(q)) or "nothing"),
            *([("Kept", "; ".join(kept(q)))] if kept(q) else []),
        ]
    rows = [
        *data_rows,
        ("Purchases", f"{bg.label} ({MODEL_SOURCES[bg.MODEL]}) per {data.period}: "
                      + ", ".join(f"{n} = {v:.4f}" for n, v in zip(bg.NAMES, bg.params, strict=True))
                      + f"; log-likelihood {bg.log_likelihood:,.2f}; {bg.n_customers:,} customers; engine {bg.engine}"),
        ("Spend", f"Gamma-Gamma: p = {gg.p:.4f}, q = {gg.q:.4f}, v = {gg.v:.4f}; population mean spend {gg.population_mean:,.2f}; "
                  f"{gg.n_customers:,} repeat customers ({gg.n_excluded:,} with spend <= 0 left out)"),
        ("CLV", f"{data.segments.horizon.words}, monthly cash flows at month ends (365.25 / 12 days), annual discount rate {data.discount_rate:.0%}"),
        ("Segments", f"{seg.method}, k = {seg.k}, seed {seg.seed}; named from the members' mean RFM scores"),
    ]
    if data.cross_sell is not None:
        rows.append(("Cross-sell", f"{data.cross_sell.excluded.height} non-product codes left out; offer score = item model (a sparse "
                                   f"EASE over who owns what) + {SEGMENT_WEIGHT:g} x the segment's penetration + the share of recent first buyers; "
                                   f"probabilities of a first purchase within {data.cross_sell.offer_horizon.label} calibrated on the "
                                   "log's last days" + render.ranking_sample_note(data.cross_sell)))
    rows.append(("Software", f"clvx {data.clvx_version}"))
    return rows


def top_targets(data: ReportData) -> pl.DataFrame | None:
    if data.cross_sell is None:
        return None
    keep = [c for c in ("segment", "rank", "product_id", "description", "category", "penetration", "index", "expected_buyers", "expected_revenue",
                        "timing") if c in data.cross_sell.ranking.columns]
    return data.cross_sell.ranking.select(keep)


REPORT_BUNDLES = 10  # bundles shown in the page and the Markdown; the workbook has them all


def top_bundles(data: ReportData) -> pl.DataFrame | None:
    if data.bundles is None or data.bundles.height == 0:
        return None
    names = [c for c in ("description_1", "description_2", "description_3") if c in data.bundles.columns]
    ids = ["product_1", "product_2", "product_3"]
    label = [pl.concat_str(pl.col(i), *([pl.lit(" "), pl.col(n)] if n in names else []), ignore_nulls=False) for i, n in
             zip(ids, ("description_1", "description_2", "description_3"), strict=True)]
    return data.bundles.head(REPORT_BUNDLES).select(
        "rank", pl.concat_list(label).list.drop_nulls().list.join(" + ").alias("products"), "orders", "support", "lift", "attach_rate", "revenue")


CAMPAIGN_COLUMNS = ["level", "key", "n_treatment", "n_control", "conversion_treatment", "conversion_control", "incremental_revenue",
                    "incremental_revenue_lower_95", "incremental_revenue_upper_95", "roi", "verdict"]
CAMPAIGN_HEADERS = {"n_treatment": "treated", "n_control": "control", "conversion_treatment": "conversion treated",
                    "conversion_control": "conversion control", "incremental_revenue": "incremental revenue",
                    "incremental_revenue_lower_95": "95% low", "incremental_revenue_upper_95": "95% high", "roi": "ROI"}
REPORT_CAMPAIGN_PRODUCTS = 10  # products shown in the page and the Markdown (largest incremental revenue); the workbook has all


def campaign_rows(data: ReportData) -> pl.DataFrame | None:
    """Overall and per-segment rows, then the products with most incremental revenue either way."""
    if data.campaign is None:
        return None
    table = data.campaign.measurement.table
    products = table.filter(pl.col("level") == "product").sort(pl.col("incremental_revenue").abs(), nulls_last=True, descending=True)
    return pl.concat([table.filter(pl.col("level") != "product"), products.head(REPORT_CAMPAIGN_PRODUCTS)]).select(CAMPAIGN_COLUMNS)


def campaign_note(data: ReportData) -> str:
    c = data.campaign
    m = c.measurement
    return (f"{m.n_treatment:,} contacted customers against {m.n_control:,} held out, purchases {c.start} to {c.end}. Incremental "
            "revenue = (contacted - held-out revenue per customer) x contacted customers, with a 95% bootstrap interval over "
            f"customers; ROI = (incremental revenue x margin {m.margin:.0%} - cost) / cost at {m.cost_per_contact:,.2f} per contact. "
            "Not significant: the interval spans zero. Products: the 10 with most incremental revenue either way; about 1 in 20 "
            "product rows shows an effect by chance.")


def cross_sell_backtest_note(cb: CrossSellBacktest) -> str:
    return (f"Offers built from the log up to {cb.calibration_end}, checked against the products {cb.n_customers:,} customers "
            f"bought for the first time in the {cb.horizon_days} days after it, beside simpler rankings. Expected buyers and "
            "revenue are summed over the offers and set beside what those customers actually bought.")


def cross_sell_backtest_tables(cb: CrossSellBacktest) -> list[tuple[str, str, pl.DataFrame, dict[str, int]]]:
    """The cross-sell backtest as (sheet name, title, table, decimals): the ranking beside its baselines, then the
    calibration of expected buyers and revenue by score decile and for the segment ranking."""
    metrics = render.crosssell_metrics_frame(cb).rename(render.CROSSSELL_METRIC_HEADERS, strict=False)
    tables = [("cross-sell backtest", "Ranking: clvx beside the baselines (x popularity = clvx / popularity).", metrics,
               dict.fromkeys(metrics.columns, 3))]
    counts = {"expected_buyers": 1, "actual_buyers": 0, "expected_revenue": 0, "actual_revenue": 0}
    if cb.calibration is not None:
        tables.append(("cross-sell calibration", "Offers by score decile (10 = highest), expected against actual over the holdout.",
                       cb.calibration, {"min_score": 3, **counts}))
    if cb.segment_calibration is not None:
        sums = [pl.col(c).sum() for c in counts]
        by_segment = cb.segment_calibration.group_by("segment", maintain_order=True).agg(pl.len().alias("products"), *sums)
        total = cb.segment_calibration.select(pl.lit("all").alias("segment"), pl.len().cast(pl.UInt32).alias("products"), *sums)
        tables.append(("segment calibration", "Segment ranking: each segment's top products, expected against actual new buyers and revenue.",
                       pl.concat([by_segment, total], how="vertical_relaxed"), counts))
    return tables


def customer_scores(data: ReportData) -> pl.DataFrame:
    cols = ["customer_id", "segment", "rfm_segment", "frequency", "days_since_last_purchase", "total_spend", "p_alive", "expected_purchases",
            "expected_avg_value", "clv"]
    customers = data.customers
    if data.opted_out is not None:
        customers = customers.filter(~pl.col("customer_id").is_in(data.opted_out.implode()))
    return customers.select([c for c in cols if c in customers.columns]).sort("clv", "customer_id", descending=[True, False])


# --------------------------------------------------------------------------- charts


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(width: float = 7.0, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "clvx", "font.size": 10, "axes.spines.top": False, "axes.spines.right": False,
                         "svg.fonttype": "path", "text.usetex": False})
    return plt.subplots(figsize=(width, height))


def plain_labels(values: list) -> list[str]:
    """Data text as matplotlib labels drawn as written: every '$' escaped, so no mathtext.

    A text with two dollars would be parsed as maths (and an unknown command after a
    backslash raises ValueError). Escaped dollars keep the whole label plain, backslashes
    included. (Turning mathtext off for the whole figure would break the log axis labels.)
    """
    return [str(v).replace("$", r"\$") for v in values]


def chart_clv_distribution(customers: pl.DataFrame, horizon_words: str) -> str:
    fig, ax = _figure()
    clv = customers["clv"].to_numpy()
    positive = clv[clv > 0]
    bins = np.logspace(np.log10(max(positive.min(), 0.01)), np.log10(positive.max()), 40) if positive.size else 10
    ax.hist(positive, bins=bins, color=PALETTE[0])
    ax.set_xscale("log")
    ax.set_xlabel(f"predicted CLV over {horizon_words} per customer (log scale)")
    ax.set_ylabel("customers")
    top = ax.get_ylim()[1]
    for (value, label, color), height in zip(((np.median(clv), "median", PALETTE[5]), (clv.mean(), "mean", PALETTE[6])), (0.97, 0.87), strict=True):
        if value > 0:
            ax.axvline(value, color=color, linestyle="--", linewidth=1.5)
            ax.text(value, top * height, f" {label} {value:,.0f}", color=color, va="top", fontweight="bold")
    return _svg(fig)


def chart_segments(profile: pl.DataFrame) -> str:
    fig, ax = _figure(7.0, 0.5 + 0.55 * profile.height)
    y = np.arange(profile.height)
    ax.barh(y - 0.2, profile["customer_share"] * 100, height=0.4, color=PALETTE[3], label="% of customers")
    ax.barh(y + 0.2, profile["clv_share"] * 100, height=0.4, color=PALETTE[0], label="% of predicted CLV")
    ax.set_yticks(y, plain_labels(profile["segment"].to_list()))
    ax.invert_yaxis()
    ax.set_xlabel("percent")
    ax.legend(loc="lower right", frameon=False)
    return _svg(fig)


def _bin_labels(edges: tuple[int, ...], unit: str = "") -> list[str]:
    labels = []
    for lo, hi in zip(edges, (*edges[1:], None), strict=True):
        if hi is None:
            labels.append(f"{lo}+{unit}")
        elif hi - lo == 1:
            labels.append(f"{lo}{unit}")
        else:
            labels.append(f"{lo}-{hi - 1}{unit}")
    return labels


def chart_p_alive(customers: pl.DataFrame) -> str:
    f_idx = np.searchsorted(FREQUENCY_BINS, customers["frequency"].to_numpy(), side="right") - 1
    r_idx = np.searchsorted(RECENCY_BINS_DAYS, customers["days_since_last_purchase"].to_numpy(), side="right") - 1
    shape = (len(FREQUENCY_BINS), len(RECENCY_BINS_DAYS))
    # bincount adds each customer in turn, as np.add.at did (the same sums to the bit), in a tenth of the time;
    # "wrap" reads an index of -1 as the last bin, as np.add.at's indexing did.
    cell = np.ravel_multi_index((f_idx, r_idx), shape, mode="wrap")
    counts = np.bincount(cell, minlength=shape[0] * shape[1]).reshape(shape).astype(np.float64)
    sums = np.bincount(cell, weights=customers["p_alive"].to_numpy(), minlength=shape[0] * shape[1]).reshape(shape)
    grid = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    fig, ax = _figure(7.0, 3.8)
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(RECENCY_BINS_DAYS)), _bin_labels(RECENCY_BINS_DAYS))
    ax.set_yticks(range(len(FREQUENCY_BINS)), _bin_labels(FREQUENCY_BINS))
    ax.set_xlabel("days since the last purchase")
    ax.set_ylabel("repeat purchases")
    for (i, j), value in np.ndenumerate(grid):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.2f}\n({int(counts[i, j]):,})", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="mean P(alive)")
    return _svg(fig)


def chart_backtest(by_frequency: pl.DataFrame, label: str = "BG/NBD") -> str:
    fig, ax = _figure()
    x = np.arange(by_frequency.height)
    ax.bar(x - 0.27, by_frequency["actual_mean"], width=0.27, color=PALETTE[3], label="actual")
    ax.bar(x, by_frequency["predicted_mean"], width=0.27, color=PALETTE[0], label=label)
    ax.bar(x + 0.27, by_frequency["calibration_rate_mean"], width=0.27, color=PALETTE[6], label="baseline: calibration rate")
    styles = iter([("o", PALETTE[5]), ("^", PALETTE[7]), ("s", PALETTE[1])])
    for column in by_frequency.columns:
        if column.startswith("predicted_mean_"):  # the other models, fitted on the same calibration data
            marker, colour = next(styles, ("o", PALETTE[1]))
            ax.plot(x, by_frequency[column], linestyle="none", marker=marker, markersize=6, color=colour,
                    label=f"{MODEL_LABELS.get(column.removeprefix('predicted_mean_'), column)} (compared)")
    ax.set_xticks(x, by_frequency["frequency_cal"].to_list())
    ax.set_xlabel("repeat purchases in the calibration period")
    ax.set_ylabel("mean purchases in the holdout")
    ax.legend(frameon=False)
    return _svg(fig)


def chart_tracking(diagnostics: HoldoutDiagnostics) -> str:
    """Cumulative repeat purchases of the calibration cohort, actual and model, with the calibration end marked."""
    tracking = diagnostics.tracking
    fig, ax = _figure()
    x = np.arange(tracking.height)
    ax.plot(x, tracking["actual_cumulative"], color=PALETTE[0], label="actual")
    ax.plot(x, tracking["expected_cumulative"], color=PALETTE[5], linestyle="--", label=plain_labels([diagnostics.label])[0])
    end = int(np.flatnonzero(tracking["phase"].to_numpy() == "calibration").max())
    ax.axvline(end, color=PALETTE[7], linewidth=1)
    ax.text(end, float(tracking["actual_cumulative"].max()), " holdout", color=PALETTE[7], va="top")
    ticks = np.linspace(0, tracking.height - 1, num=min(6, tracking.height)).astype(int)
    ax.set_xticks(ticks, [str(tracking["period_start"][int(i)]) for i in ticks])
    ax.set_ylabel("cumulative repeat purchases")
    ax.legend(frameon=False, loc="upper left")
    return _svg(fig)


def diagnostics_frames(d: HoldoutDiagnostics) -> dict[str, pl.DataFrame]:
    """The diagnostics as tables: interval coverage, PIT, the total, tracking (about 14 periods) and deciles."""
    t = d.total
    return {
        "coverage": render.coverage_frame(d),
        "pit": d.pit,
        "total": pl.DataFrame({"level": [t.level], "actual": [t.actual], "expected": [t.expected], "low": [t.low], "high": [t.high],
                               "contains_actual": ["yes" if t.contains else "no"]}),
        "tracking": render.tracking_rows(d.tracking),
        "deciles": d.deciles,
    }


DIAGNOSTIC_HEADERS = {"empirical_share": "empirical", "implied_share": "implied", "gap_points": "gap (points)",
                      "actual_cumulative": "actual", "expected_cumulative": "model", "model_vs_actual_share": "model vs actual",
                      "predicted_mean": "forecast", "actual_mean": "actual", "share": "share of customers"}
DIAGNOSTIC_DECIMALS = {"gap_points": 1, "actual_cumulative": 0, "expected_cumulative": 0, "predicted_mean": 3, "actual_mean": 3,
                       "actual": 0, "expected": 0, "low": 0, "high": 0, "share": 3}


def diagnostics_html(d: HoldoutDiagnostics) -> list[str]:
    frames = diagnostics_frames(d)
    t = d.total
    table = lambda name: _html_table(frames[name], DIAGNOSTIC_HEADERS, DIAGNOSTIC_DECIMALS)  # noqa: E731
    return [
        "<h2>How sure is the forecast? Intervals and tracking on the holdout</h2>",
        *(f'<p class="warning">{html.escape(w)}</p>' for w in d.warnings),
        _figure_html(chart_tracking(d), "Cumulative repeat purchases of the customers seen in the calibration period: actual "
                                        "against the model's forecast, the same line over calibration and holdout."),
        f'<p class="note">Per customer, the model gives an interval of holdout purchases ({render.draws_text(d)}). '
        "Empirical: the share of customers whose purchases fell inside; implied: the probability the model gives those "
        "whole-count intervals, which is more than the level.</p>",
        table("coverage"),
        f'<p class="note">The {t.level:.0%} interval of the total, {t.low:,.0f} to {t.high:,.0f} repeat purchases, '
        f"{'contains' if t.contains else 'does not contain'} the actual {t.actual:,.0f} (expected {t.expected:,.0f}).</p>",
        '<p class="note">Randomised PIT: where each customer\'s count fell in its predictive distribution; each tenth holds '
        "10% when the model is calibrated.</p>",
        table("pit"),
        '<p class="note">Calibration by decile: customers in ten equal groups by their forecast, mean forecast beside mean actual.</p>',
        table("deciles"),
    ]


def chart_cross_sell(cross_sell: Any) -> str:
    ranking = cross_sell.ranking
    products = ranking.group_by("product_id").agg(pl.col("expected_revenue").sum()).sort("expected_revenue", "product_id", descending=[True, False])
    products = products["product_id"].head(MAX_HEATMAP_PRODUCTS).to_list()
    model = cross_sell.model
    segments = cross_sell.segments.segmentation.profile["segment"].to_list()
    pidx = {p: i for i, p in enumerate(model.own.products.to_list())}
    sidx = {s: i for i, s in enumerate(model.segments)}
    pen = model.segment_penetration
    pop = np.maximum(model.population_penetration, 1e-12)
    grid = np.array([[pen[sidx[s], pidx[p]] / pop[pidx[p]] for p in products] for s in segments])
    fig, ax = _figure(max(6.0, 0.6 * len(products) + 2), 0.6 + 0.5 * len(segments))
    im = ax.imshow(np.log2(np.maximum(grid, 1e-3)), cmap="PuOr_r", vmin=-2, vmax=2, aspect="auto")
    ax.set_xticks(range(len(products)), plain_labels(products), rotation=45, ha="right")
    ax.set_yticks(range(len(segments)), plain_labels(segments))
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="index (log2): segment penetration / overall")
    return _svg(fig)


# --------------------------------------------------------------------------- HTML

CSS = """
:root { --ink: #1d2a35; --muted: #5c6b77; --line: #d9e2ea; --accent: #1b4965; --bg: #f7f9fb; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink);
       margin: 0; background: var(--bg); }
main { max-width: 1100px; margin: 0 auto; padding: 32px 28px 64px; background: white; }
h1 { font-size: 28px; margin: 0 0 4px; color: var(--accent); }
h2 { font-size: 20px; margin: 40px 0 8px; padding-bottom: 6px; border-bottom: 2px solid var(--line); color: var(--accent); }
p.lede, p.note { color: var(--muted); margin: 4px 0 12px; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 14px; margin: 24px 0 8px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; }
.card .label { font-size: 13px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 30px; font-weight: 650; margin: 2px 0; }
.card .hint { font-size: 12px; color: var(--muted); }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin: 8px 0; }
.table-wrap { overflow-x: auto; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #eef3f7; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th.num { white-space: normal; }
figure { margin: 12px 0 20px; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13px; }
.method { background: #f2f6f9; border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; }
.method dt { font-weight: 600; margin-top: 6px; }
.method dd { margin: 0 0 4px; color: var(--ink); }
.warning { border-left: 4px solid #ef8354; background: #fff5ef; padding: 8px 12px; margin: 10px 0; }
@media print {
  body { background: white; font-size: 11pt; }
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; }
  figure, table, .card { break-inside: avoid; }
  .cards { grid-template-columns: repeat(4, 1fr); }
}
@media (max-width: 800px) { .cards { grid-template-columns: repeat(2, 1fr); } }
"""


def _html_table(frame: pl.DataFrame, headers: dict[str, str] | None = None, decimals: dict[str, int] | None = None) -> str:
    headers = headers or {}
    decimals = decimals or {}
    numeric = {c for c, t in frame.schema.items() if t.is_numeric()}
    head = "".join(f'<th class="{"num" if c in numeric else ""}">{html.escape(headers.get(c, c))}</th>' for c in frame.columns)
    rows = []
    for row in frame.iter_rows():
        cells = "".join(
            f'<td class="{"num" if c in numeric else ""}">{html.escape(format_cell(c, v, decimals.get(c, 2)))}</td>'
            for c, v in zip(frame.columns, row, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    # A wide table scrolls inside its box on a narrow screen instead of spilling past the page.
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _figure_html(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


SEGMENT_HEADERS = {"n_customers": "customers", "customer_share": "% customers", "revenue_share": "% revenue", "clv": "CLV",
                   "clv_share": "% CLV", "mean_p_alive": "P(alive)", "churn_risk": "churn risk, 90d",
                   "median_days_since_last_purchase": "days since last purchase",
                   "median_frequency": "repeats", "avg_order_value": "avg order", "expected_purchases_90d": "purchases next 90d",
                   "top_categories": "over-indexed"}
SEGMENT_DECIMALS = {"revenue": 0, "clv": 0, "median_days_since_last_purchase": 0, "median_frequency": 0, "expected_purchases_90d": 0}


def html_report(data: ReportData) -> str:
    """The whole report as one HTML document: inline styles and SVG charts, no scripts, no network."""
    profile = data.segments.segmentation.profile
    parts = [
        f"<h1>{html.escape(data.title)}</h1>",
        f'<p class="lede">{html.escape(data.source)} · observed to {data.as_of} · period {data.period}</p>',
        '<section class="cards">' + "".join(
            f'<div class="card"><div class="label">{html.escape(k)}</div><div class="value">{html.escape(v)}</div>'
            f'<div class="hint">{html.escape(n)}</div></div>' for k, v, n in headline(data)) + "</section>",
    ]
    bg = data.segments.purchase_model
    if bg.dropout_per_purchase < LOW_DROPOUT:
        parts.append('<p class="warning">The purchase model sees almost no customers leave in this log, so P(alive) is near 1 for '
                     "nearly everyone and churn figures say little; a longer history would tell more.</p>")
    parts += [
        "<h2>Customer segments</h2>",
        f'<p class="note">Ordered by share of predicted CLV over {html.escape(data.segments.horizon.words)}, by '
        f"{html.escape(bg.label)} and Gamma-Gamma. Churn risk is the segment's mean probability of no purchase in the next 90 days.</p>",
        _html_table(profile.drop("top_categories", strict=False),
                    SEGMENT_HEADERS | {"clv": f"CLV, {data.segments.horizon.words}"}, SEGMENT_DECIMALS),
        *(["<p class=\"note\">What each segment buys more often than customers overall (index = segment / overall):</p>"
           + _html_table(profile.select("segment", pl.col("top_categories").fill_null("—")), {"top_categories": "over-indexed categories"})]
          if "top_categories" in profile.columns else []),
        _figure_html(chart_segments(profile), "Each segment's share of customers beside its share of predicted value."),
        "<h2>Customer value</h2>",
        _figure_html(chart_clv_distribution(data.customers, data.segments.horizon.words),
                     f"Predicted CLV over {data.segments.horizon.words} per customer: value is concentrated in few customers."),
        _figure_html(chart_p_alive(data.customers), "Mean P(alive) by repeat purchases and days since the last purchase (customers per cell in brackets)."),
    ]
    if data.backtest is not None:
        bt = data.backtest
        parts += [
            "<h2>Does the forecast hold? Holdout backtest</h2>",
            f'<p class="note">Fitted on purchases up to {bt.calibration_end}, then asked to forecast each customer\'s purchases over the '
            f"following {bt.duration_holdout} {bt.period.value}s. Predicted total {bt.model.predicted_total:,.0f} vs actual "
            f"{bt.model.actual_total:,.0f} ({bt.model.bias:+.1%}); the naive calibration-rate forecast was "
            f"{bt.baselines['calibration_rate'].predicted_total:,.0f} ({bt.baselines['calibration_rate'].bias:+.1%}).</p>",
            _figure_html(chart_backtest(bt.by_frequency, bt.purchase_model.label), "Mean holdout purchases by calibration-period repeat purchases."),
        ]
    if data.diagnostics is not None:
        parts += diagnostics_html(data.diagnostics)
    if data.cross_sell is not None:
        parts += [
            "<h2>Cross-sell: what to offer each segment</h2>",
            '<p class="note">Top products per segment by expected revenue from the segment\'s non-owners over '
            f"{html.escape(data.cross_sell.offer_horizon.label)}. Index: how much more often the segment owns the product than customers overall."
            f"{html.escape(render.ranking_sample_note(data.cross_sell))}</p>",
            _html_table(top_targets(data), {"penetration": "% of segment own it", "expected_buyers": "expected buyers",
                                            "expected_revenue": "expected revenue"}, {"expected_buyers": 1}),
            _figure_html(chart_cross_sell(data.cross_sell), "Segment x product index for the products with most expected revenue "
                                                             "(orange: over-indexed, purple: under-indexed)."),
        ]
    campaign = campaign_rows(data)
    if campaign is not None:
        parts += [
            "<h2>Campaign: did the offers work?</h2>",
            f'<p class="note">{html.escape(campaign_note(data))}</p>',
            _html_table(campaign, CAMPAIGN_HEADERS, {"roi": 2}),
        ]
    bundles = top_bundles(data)
    if bundles is not None:
        parts += [
            "<h2>Bundles: bought together in one order</h2>",
            '<p class="note">Sets of 2-3 products found together in one order, by attach rate: of the orders with the set\'s most '
            "ordered product, the share that held the whole set. Support = share of all orders; lift = how many times likelier than "
            "by chance; revenue = what the set earned in those orders.</p>",
            _html_table(bundles, {"attach_rate": "attach rate"}),
        ]
    if data.cross_sell_backtest is not None:
        cb = data.cross_sell_backtest
        parts += [
            "<h2>Does cross-sell hold? Holdout backtest</h2>",
            f'<p class="note">{html.escape(cross_sell_backtest_note(cb))}</p>',
            *(f'<p class="warning">{html.escape(w)}</p>' for w in cb.warnings),
        ]
        for _, title, frame, decimals in cross_sell_backtest_tables(cb):
            parts += [f'<p class="note">{html.escape(title)}</p>', _html_table(frame, None, decimals)]
    parts += [
        "<h2>Methodology</h2>",
        '<dl class="method">' + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in methodology(data)) + "</dl>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(data.title)}</title>"
        f"<style>{CSS}</style></head><body><main>\n" + "\n".join(parts) + "\n</main></body></html>\n"
    )


# --------------------------------------------------------------------------- Markdown


_MD_BREAKS = re.compile(r"[\t\r\n\u2028\u2029]+")
# Emphasis, code, links and images, pipes (cell ends), strikethrough; an underscore inside
# a word (customer_id) is no emphasis and stays as it is, for readable Markdown.
_MD_INLINE = re.compile(r"([\\`*\[\]|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_MD_LINE_START = re.compile(r"^(\s*)([#>+=-])")
_MD_LIST_NUMBER = re.compile(r"^(\s*\d+)([.)])")
# What starts an HTML tag, comment or autolink (<a, </, <!, <?) or an entity (&lt; &#60;).
_MD_HTML = re.compile(r"<(?=[A-Za-z/!?])|&(?=#?[A-Za-z0-9]+;)")


def markdown_text(text: str) -> str:
    """Data text safe inside a Markdown line or table cell, and still readable as plain text.

    Line breaks become spaces (they would end the cell), other controls are shown as
    escapes, Markdown punctuation (emphasis, code, links, pipes) is backslash-escaped,
    a leading block marker (heading, quote, list, rule) is escaped, and anything that
    could start HTML or an entity becomes an entity, so no markup from the data renders.
    """
    text = terminal_text(_MD_BREAKS.sub(" ", text))
    text = _MD_INLINE.sub(r"\\\1", text)
    text = _MD_LIST_NUMBER.sub(r"\1\\\2", text)
    text = _MD_LINE_START.sub(r"\1\\\2", text)
    return _MD_HTML.sub(lambda m: "&lt;" if m.group() == "<" else "&amp;", text)


def markdown_table(frame: pl.DataFrame, decimals: dict[str, int] | None = None) -> str:
    decimals = decimals or {}
    numeric = {c for c, t in frame.schema.items() if t.is_numeric()}
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "|".join("---:" if c in numeric else "---" for c in frame.columns) + "|"]
    for row in frame.iter_rows():
        cells = [format_cell(c, v, decimals.get(c, 2)) if c in numeric else markdown_text(format_cell(c, v, decimals.get(c, 2)))
                 for c, v in zip(frame.columns, row, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(data: ReportData) -> str:
    md = markdown_text
    parts = [f"# {md(data.title)}", "", f"{md(data.source)}, observed to {data.as_of}, period {data.period}.", ""]
    parts += [f"- **{k}**: {md(v)} ({md(n)})" for k, v, n in headline(data)]
    profile = render.profile_columns(data.segments.segmentation.profile, data.segments.horizon)
    suffix = render.horizon_suffix(data.segments.horizon)
    parts += ["", "## Customer segments", "", markdown_table(profile, SEGMENT_DECIMALS | {f"clv_{suffix}": 0})]
    if data.backtest is not None:
        parts += ["", "## Holdout backtest", "", markdown_table(data.backtest.by_frequency, {c: 3 for c in data.backtest.by_frequency.columns})]
    if data.diagnostics is not None:
        d = data.diagnostics
        frames = diagnostics_frames(d)
        parts += ["", "## Intervals and tracking on the holdout", ""]
        parts += [f"> {md(w)}\n" for w in d.warnings]
        titles = {"coverage": f"Interval coverage ({render.draws_text(d)})", "pit": "Randomised PIT", "total": "Holdout total",
                  "tracking": "Tracking: cumulative repeat purchases", "deciles": "Calibration by decile"}
        for name, frame in frames.items():
            parts += [f"### {md(titles[name])}", "", markdown_table(frame, DIAGNOSTIC_DECIMALS), ""]
    if data.cross_sell is not None:
        offer_horizon = data.cross_sell.offer_horizon
        targets = render.with_horizon(top_targets(data), offer_horizon, render.OFFER_COLUMNS)  # type: ignore[arg-type]
        parts += ["", "## Cross-sell targets per segment", "",
                  markdown_table(targets, {f"expected_buyers_{render.horizon_suffix(offer_horizon)}": 1})]
        if note := render.ranking_sample_note(data.cross_sell).strip():
            parts += ["", md(note)]
    bundles = top_bundles(data)
    if bundles is not None:
        parts += ["", "## Bundles bought together in one order", "", markdown_table(bundles)]
    if data.cross_sell_backtest is not None:
        cb = data.cross_sell_backtest
        parts += ["", "## Cross-sell holdout backtest", "", md(cross_sell_backtest_note(cb)), ""]
        parts += [f"> {md(w)}\n" for w in cb.warnings]
        for _, title, frame, decimals in cross_sell_backtest_tables(cb):
            parts += [md(title), "", markdown_table(frame, decimals), ""]
    campaign = campaign_rows(data)
    if campaign is not None:
        parts += ["", "## Campaign: did the offers work?", "", md(campaign_note(data)), "", markdown_table(campaign, {"roi": 2})]
    parts += ["", "## Methodology", ""] + [f"- **{k}**: {md(v)}" for k, v in methodology(data)]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- Excel


XLSX_HEADERS = {
    "customer_id": "Customer ID", "segment": "Segment", "rfm_segment": "RFM segment", "n_customers": "Customers",
    "customer_share": "% of customers", "revenue": "Revenue", "revenue_share": "% of revenue", "clv": "CLV",
    "clv_share": "% of CLV", "mean_p_alive": "Mean P(alive)", "churn_risk": "Churn risk",
    "median_days_since_last_purchase": "Median days since last purchase", "median_frequency": "Median repeat purchases",
    "avg_order_value": "Average order value", "expected_purchases": "Expected purchases", "expected_purchases_90d": "Expected purchases, next 90 days",
    "top_categories": "Over-indexed categories (index)", "frequency": "Repeat purchases",
    "days_since_last_purchase": "Days since last purchase", "total_spend": "Total spend", "p_alive": "P(alive)",
    "expected_avg_value": "Expected spend per purchase", "rank": "Rank", "product_id": "Product", "description": "Description",
    "category": "Category", "owners": "Owners in segment", "penetration": "% of segment own it",
    "population_penetration": "% of all customers own it", "index": "Index", "white_space": "Non-owners in segment",
    "expected_buyers": "Expected buyers", "expected_revenue": "Expected revenue", "antecedent": "If bought",
    "consequent": "Then buys", "antecedent_owners": "Owners of first", "consequent_owners": "Owners of second",
    "co_owners": "Owners of both", "same_order_owners": "Owners of both who bought them in one order",
    "bought_after": "Owners of both who bought the second later", "support": "Support", "confidence": "Confidence",
    "lift": "Lift", "leverage": "Leverage", "conviction": "Conviction", "timing": "Timing",
    "median_days_after": "Median days after the first", "antecedent_description": "If bought (name)",
    "consequent_description": "Then buys (name)", "because_of": "Because they bought", "because_of_description": "Because they bought (name)",
    "companion": "Most often owned with", "companion_description": "Most often owned with (name)",
}
# Per sheet, where one column name means something narrower there.
SHEET_HEADERS = {"segments": {"expected_purchases_90d": "Expected purchases, next 90 days (segment total)"}}
WHOLE_DAYS = ("days_since_last_purchase", "median_days_since_last_purchase", "median_days_after", "median_frequency")


def xlsx_header(name: str, sheet: str = "") -> str:
    """The column's header in the workbook: words, not snake_case."""
    if name in SHEET_HEADERS.get(sheet, {}):
        return SHEET_HEADERS[sheet][name]
    return XLSX_HEADERS.get(name) or name.replace("_", " ").capitalize()


def xlsx_number_format(name: str, dtype: pl.DataType) -> str | None:
    """The Excel number format of a column: percentages for shares, whole days and counts, money with cents."""
    if not dtype.is_numeric():
        return None
    if name in ("p_alive", "mean_p_alive"):
        return "0.000"
    if name == "support":
        return "0.00%"
    if column_kind(name) == "share":
        return "0.0%"
    if name in ("score", "leverage"):
        return "0.0000"
    if name in WHOLE_DAYS or dtype.is_integer() or column_kind(name) == "count":
        return "#,##0"
    return "#,##0.00"  # money, and measures such as lift and expected buyers


# How xlsxwriter's Worksheet.autofit() measures a column, in pixels of Excel's default font: a text by
# the width of each character (xl_pixel_width, 8 for a character it does not list), a number as 7 per
# character of str(number), the widest line of a cell; a header with an autofilter arrow 16 more; the
# widest cell plus 7 of padding, at most Excel's widest column. Computed here from the frame with
# polars, since autofit walks every stored cell in Python (most of a 100,000-row sheet's time).
DIGIT_PX = 7
DEFAULT_CHAR_PX = 8
FILTER_ARROW_PX = 16
CELL_PADDING_PX = 7
MAX_COLUMN_PX = 1790


@functools.cache
def _byte_px() -> np.ndarray:
    """Pixels per UTF-8 byte: xlsxwriter's width of each ASCII character it lists, 8 for any other character
    (counted on its lead byte; continuation bytes 0), so a text's bytes sum to xl_pixel_width."""
    from xlsxwriter.utility import CHAR_WIDTHS

    px = np.full(256, DEFAULT_CHAR_PX, dtype=np.int64)
    px[0x80:0xC0] = 0
    for char, width in CHAR_WIDTHS.items():
        px[ord(char)] = width
    return px


def text_width_px(texts: pl.Series) -> int:
    """The widest line among ``texts`` in pixels, as xlsxwriter's xl_pixel_width counts each character (0 if none)."""
    lines = texts.cast(pl.String).str.split("\n").explode().drop_nulls()
    if lines.is_empty():
        return 0
    cumulative = np.concatenate([[0], np.cumsum(_byte_px()[np.frombuffer("".join(lines.to_list()).encode(), dtype=np.uint8)])])
    n_bytes = lines.str.len_bytes().to_numpy()
    ends = np.cumsum(n_bytes)
    return int((cumulative[ends] - cumulative[ends - n_bytes]).max())


def python_repr_lengths(values: pl.Series) -> pl.Series:
    """len(str(v)) of each float ``v`` as Python writes it, from polars' own text of the number.

    Both write the shortest digits that read back as the same float (Steele & White 1990); they
    differ in layout. Python's repr (format 'r': 'g' with up to 17 digits) is positional for a
    decimal exponent e in [-4, 16), with '.0' after a whole number, and d.ddde-05 otherwise, the
    exponent with at least two digits. So the digits and the exponent are read from polars' text,
    whichever layout it chose, and Python's length is built from them.
    """
    text = pl.col("text")
    mantissa, n, e = pl.col("mantissa"), pl.col("n"), pl.col("e")
    return (
        pl.DataFrame({"text": values.cast(pl.Float64).cast(pl.String)})
        .with_columns(negative=text.str.starts_with("-").cast(pl.Int64), body=text.str.strip_prefix("-"))
        .with_columns(mantissa=pl.col("body").str.extract(r"^([0-9.]*)", 1),
                      exponent=pl.col("body").str.extract(r"[eE]\+?(-?[0-9]+)$", 1).cast(pl.Int64).fill_null(0))
        .with_columns(point=mantissa.str.find(".", literal=True).cast(pl.Int64).fill_null(mantissa.str.len_chars().cast(pl.Int64)),
                      digits=mantissa.str.replace(".", "", literal=True))
        .with_columns(
            n=pl.col("digits").str.strip_chars("0").str.len_chars().cast(pl.Int64),  # significant digits
            # the first significant digit's power of ten
            e=pl.col("exponent") + pl.col("point") - 1
            - (pl.col("digits").str.len_chars() - pl.col("digits").str.strip_chars_start("0").str.len_chars()).cast(pl.Int64),
        )
        .select(pl.col("negative") + pl.when(n == 0).then(3)  # 0.0
                .when(e.is_between(0, 15)).then(pl.when(n <= e + 1).then(e + 3).otherwise(n + 1))  # 120.0, 1.25
                .when(e.is_between(-4, -1)).then(1 - e + n)  # 0.0125
                .otherwise(n + (n > 1).cast(pl.Int64) + 2 + pl.when(e.abs() >= 100).then(3).otherwise(2)))  # 1.25e-05, 1e+16
        .to_series()
    )


def number_width_px(values: pl.Series) -> int:
    """The widest number of ``values`` as autofit measures it: 7 pixels per character of str(v); blanks 0."""
    if values.dtype.is_float():
        lengths = python_repr_lengths(values.filter(values.is_finite()))
    else:
        lengths = values.cast(pl.String).str.len_chars()
    return DIGIT_PX * int(lengths.max() or 0)  # type: ignore[arg-type]


def column_width_px(header: str, values: pl.Series | None, texts: pl.Series | None) -> int:
    """A table column's width as autofit would set it: its header with the filter arrow, its widest cell, padding, capped."""
    widest = text_width_px(pl.Series([header]))
    widest += FILTER_ARROW_PX if widest else 0
    if values is not None:
        widest = max(widest, number_width_px(values))
    if texts is not None:
        widest = max(widest, text_width_px(texts))
    return min(widest + CELL_PADDING_PX, MAX_COLUMN_PX)


def _xlsx_table(wb, name: str, frame: pl.DataFrame, header_format: dict, headers: dict[str, str] | None = None) -> None:
    """One sheet holding ``frame`` as an Excel table: human headers, autofilter, frozen header row, typed cells.

    ``headers`` override the standard ones (e.g. with the report's CLV horizon). Columns are as wide
    as xlsxwriter's autofit would make them (see :func:`column_width_px`).
    """
    headers = headers or {}
    ws = wb.add_worksheet(name)
    head = wb.add_format(header_format)
    n_rows = frame.height
    frame = frame.head(MAX_SHEET_ROWS)
    columns = []
    widths = []
    for col, (column, dtype) in enumerate(frame.schema.items()):
        number_format = xlsx_number_format(column, dtype)
        cell_format = wb.add_format({"num_format": number_format}) if number_format else None
        header = headers.get(column) or xlsx_header(column, name)
        columns.append({"header": header, "header_format": head, **({"format": cell_format} if cell_format else {})})
        values = frame[column].to_list()
        if dtype.is_numeric():
            for row, v in enumerate(values, start=1):
                if v is None or (isinstance(v, float) and not math.isfinite(v)):
                    ws.write_blank(row, col, None, cell_format)
                else:
                    ws.write_number(row, col, v, cell_format)
            widths.append(column_width_px(header, frame[column], None))
        else:
            texts = values if dtype == pl.String else [None if v is None else format_cell(column, v) for v in values]
            for row, v in enumerate(texts, start=1):
                if v is not None:
                    ws.write_string(row, col, v)
            widths.append(column_width_px(header, None, frame[column] if dtype == pl.String else pl.Series(texts, dtype=pl.String)))
    ws.add_table(0, 0, max(frame.height, 1), max(frame.width - 1, 0),
                 {"columns": columns, "style": "Table Style Light 9", "autofilter": True})
    if n_rows > frame.height:
        how = FULL_EXPORTS.get(name, "the command's --output")
        note = (f"Showing the first {frame.height:,} of {n_rows:,} rows (a sheet holds at most {MAX_SHEET_ROWS:,} here); "
                f"for all of them: {how}")
        ws.write_string(frame.height + 2, 0, note)
        if widths:
            widths[0] = max(widths[0], min(text_width_px(pl.Series([note])) + CELL_PADDING_PX, MAX_COLUMN_PX))
    ws.freeze_panes(1, 0)
    for col, width in enumerate(widths):
        ws.set_column_pixels(col, col, width)


def _xlsx_summary(wb, data: ReportData, header_format: dict) -> None:
    """The headline numbers as numbers with formats, then the methodology as text."""
    ws = wb.add_worksheet("summary")
    head = wb.add_format(header_format)
    bold = wb.add_format({"bold": True})
    for col, text in enumerate(("Item", "Value", "Note")):
        ws.write_string(0, col, text, head)
    row = 1
    for label, value, kind, note in headline_numbers(data):
        ws.write_string(row, 0, label, bold)
        ws.write_number(row, 1, value, wb.add_format({"num_format": HEADLINE_EXCEL[kind]}))
        ws.write_string(row, 2, note)
        row += 1
    for label, text in methodology(data):
        ws.write_string(row, 0, label, bold)
        ws.write_string(row, 1, text)
        row += 1
    ws.freeze_panes(1, 0)
    ws.set_column(0, 0, 26)
    ws.set_column(1, 1, 24)
    ws.set_column(2, 2, 44)


# Text is never a formula, a link or a number, whatever it starts with.
XLSX_OPTIONS = {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False, "nan_inf_to_errors": True}


def xlsx_report(data: ReportData, path: Path) -> None:
    """Sheets: summary, segments, customer scores, cross-sell ranking, rules; formatted headers and numbers."""
    import xlsxwriter

    sheets: list[tuple[str, pl.DataFrame]] = [
        ("segments", data.segments.segmentation.profile),
        ("customer scores", customer_scores(data)),
    ]
    if data.cross_sell is not None:
        sheets.append(("cross-sell ranking", data.cross_sell.ranking))
    if data.rules is not None:
        sheets.append(("rules", data.rules))
    if data.bundles is not None:
        sheets.append(("bundles", data.bundles))
    if data.campaign is not None:
        sheets.append(("campaign", data.campaign.measurement.table))
    if data.cross_sell_backtest is not None:
        sheets += [(sheet, frame) for sheet, _, frame, _ in cross_sell_backtest_tables(data.cross_sell_backtest)]
    if data.diagnostics is not None:
        sheets += [("interval coverage", render.coverage_frame(data.diagnostics)), ("tracking", data.diagnostics.tracking),
                   ("calibration deciles", data.diagnostics.deciles)]
    created = dt.datetime.combine(data.as_of, dt.time())
    with xlsxwriter.Workbook(str(path), XLSX_OPTIONS) as wb:
        wb.set_properties({"title": data.title, "created": created, "author": "clvx"})
        header = {"bold": True, "bg_color": "#1b4965", "font_color": "#ffffff", "border": 1, "text_wrap": True}
        _xlsx_summary(wb, data, header)
        words = data.segments.horizon.words
        horizon = {"clv": f"CLV, {words}", "expected_purchases": f"Expected purchases, {words}", "churn_risk": f"Churn risk, next {NEAR_TERM.words}"}
        if data.cross_sell is not None:
            offers = data.cross_sell.offer_horizon.words
            horizon |= {"expected_buyers": f"Expected buyers, next {offers}", "expected_revenue": f"Expected revenue, next {offers}"}
        for name, frame in sheets:
            _xlsx_table(wb, name, frame, header, horizon)
