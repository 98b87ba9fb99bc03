"""clvx's cross-sell ranking against the recommenders an engineer would try first, on the UCI retail log.

    python bench/crosssell.py [--log online_retail.parquet] [--bootstrap 1000]

For each time split (train to the calibration end, holdout after it), every method
ranks products for the same customers: those of the calibration period who bought a
product for the first time in the holdout. Products a customer owns are never scored;
the truth is their first-time purchases. Methods:

- random; popularity (number of buyers);
- item-kNN: cosine similarity of item columns, score = sum over owned items;
- EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data", eq. 8):
  ``B = I - P diagMat(1 / diag(P))``, ``P = (X'X + lambda I)^-1``; lambda chosen on a
  split inside the training period (its last holdout-length days held out);
- implicit ALS (Hu, Koren & Volinsky 2008, the `implicit` package): user and item factors
  from the confidence-weighted ownership matrix, score = user factors x item factors;
  factors, regularisation and alpha chosen on the same inner split as EASE's lambda;
- clvx: the shipped ranking (segments.crosssell), run end to end on the calibration log.

Metrics: HR@5 (share with a new purchase in the top 5) and NDCG@10 (binary gains), and
clvx / EASE with 95% paired-bootstrap intervals over customers. Also checks the
calibration of clvx's expected buyers and revenue on the same holdouts.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
from scipy import sparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clv.load import ColumnMapping, Transactions, load_transactions  # noqa: E402
from clv.models import Horizon  # noqa: E402
from segments.crosssell import (  # noqa: E402
    SPEND_RANK_EDGES,
    _top_k,
    calibration_warnings,
    customer_targets,
    evaluation_lists,
    offer_calibration,
    segment_ranking_calibration,
)
from segments.pipeline import CrossSellRun, _purchase_lines, holdout_spend, run_crosssell  # noqa: E402

RETAIL = Path(__file__).resolve().parents[2] / "shared" / "data" / "online_retail.parquet"
RETAIL_COLUMNS = ColumnMapping(customer="customer_id", date="invoice_date", price="price", quantity="quantity",
                               order="invoice", product="stock_code", description="description")
# (calibration end, holdout end): both days included in their period.
SPLITS = ((dt.date(2011, 6, 1), dt.date(2011, 9, 1)), (dt.date(2011, 9, 1), dt.date(2011, 12, 9)),
          (dt.date(2011, 10, 15), dt.date(2011, 12, 9)))
EASE_LAMBDAS = (100.0, 200.0, 400.0, 800.0)
ALS_GRID = tuple((f, r, a) for f in (64, 128) for r in (0.01, 0.1, 1.0) for a in (1.0, 10.0, 40.0))  # factors, regularisation, alpha
ALS_ITERATIONS = 15
HR_K = 5
NDCG_K = 10
CHUNK = 512


@dataclass(frozen=True)
class Split:
    calibration_end: dt.date
    holdout_end: dt.date
    X: sparse.csr_matrix  # calibration ownership, customers x products (clvx's products and customers)
    truth: sparse.csr_matrix  # first-time purchases in the holdout
    revenue: sparse.csr_matrix  # holdout spend on them
    evaluated: np.ndarray  # customers with at least one first-time purchase


def cut(tx: Transactions, start: dt.date | None, end: dt.date) -> Transactions:
    """The log from ``start`` (included) to ``end`` (included)."""
    frame = tx.frame.filter(pl.col("date") < dt.datetime.combine(end + dt.timedelta(days=1), dt.time()))
    if start is not None:
        frame = frame.filter(pl.col("date") >= dt.datetime.combine(start, dt.time()))
    return replace(tx, frame=frame, quality=replace(tx.quality, as_of=end))


def holdout_truth(tx: Transactions, run: CrossSellRun, start: dt.date, end: dt.date) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """First-time purchases (and their spend) of the run's customers and products from ``start`` to ``end``."""
    own = run.model.own
    lines = _purchase_lines(cut(tx, start, end))
    spend = holdout_spend(lines, own.customers, own.products)
    bought = sparse.csr_matrix((spend["amount"].to_numpy(), (spend["_u"].to_numpy(), spend["_j"].to_numpy())), shape=own.X.shape)
    new = bought - bought.multiply(own.X > 0)
    new.eliminate_zeros()
    new.data = np.maximum(new.data, 0.0)
    new.eliminate_zeros()
    return (new > 0).astype(np.float64).tocsr(), new.tocsr()


def prepare(tx: Transactions, calibration_end: dt.date, holdout_end: dt.date, seed: int) -> tuple[Split, CrossSellRun]:
    """clvx run end to end on the calibration log, its expectations for the holdout's length, and the holdout's truth."""
    horizon = Horizon.parse(f"{(holdout_end - calibration_end).days}d")
    run = run_crosssell(cut(tx, None, calibration_end), seed=seed, offer_horizon=horizon)
    truth, revenue = holdout_truth(tx, run, calibration_end + dt.timedelta(days=1), holdout_end)
    evaluated = np.flatnonzero(np.asarray(truth.sum(axis=1)).ravel() > 0)
    return Split(calibration_end, holdout_end, run.model.own.X.tocsr(), truth, revenue, evaluated), run


# --------------------------------------------------------------------------- baselines


def ease_weights(X: sparse.csr_matrix, lam: float) -> np.ndarray:
    """EASE's item-item weights (Steck 2019, eq. 8): dense, products x products."""
    G = (X.T @ X).toarray()
    G[np.diag_indices_from(G)] += lam
    P = np.linalg.inv(G)
    B = -P / np.diag(P)[None, :]
    B[np.diag_indices_from(B)] = 0.0
    return B


def cosine_weights(X: sparse.csr_matrix) -> sparse.csr_matrix:
    G = (X.T @ X).tocsr().astype(np.float64)
    norms = np.sqrt(np.maximum(G.diagonal(), 1e-12))
    G = sparse.diags(1 / norms) @ G @ sparse.diags(1 / norms)
    G.setdiag(0.0)
    G.eliminate_zeros()
    return G.tocsr()


def top_lists(score_block, X: sparse.csr_matrix, rows: np.ndarray, k: int = NDCG_K) -> np.ndarray:
    """Top ``k`` product indices per evaluated customer; owned products never scored."""
    out = []
    for s in range(0, len(rows), CHUNK):
        sel = rows[s : s + CHUNK]
        scores = np.array(score_block(sel), dtype=np.float64)
        owned = X[sel]
        scores[owned.nonzero()] = -np.inf
        out.append(_top_k(scores, k)[0])
    return np.vstack(out) if out else np.zeros((0, k), dtype=np.int64)


def hits(lists: np.ndarray, truth: sparse.csr_matrix, rows: np.ndarray) -> np.ndarray:
    r = np.repeat(rows, lists.shape[1])
    return (np.asarray(truth[r, lists.ravel()]).reshape(lists.shape) > 0)


def per_customer(lists: np.ndarray, truth: sparse.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HR@5 and NDCG@10 per customer."""
    h = hits(lists, truth, rows)
    hr = h[:, :HR_K].any(axis=1).astype(np.float64)
    disc = 1.0 / np.log2(np.arange(2, NDCG_K + 2))
    dcg = (h[:, :NDCG_K] * disc[None, : h.shape[1]]).sum(axis=1)
    n_rel = np.minimum(np.asarray(truth[rows].sum(axis=1)).ravel(), NDCG_K).astype(int)
    idcg = np.cumsum(disc)[np.maximum(n_rel, 1) - 1]
    return hr, dcg / idcg


def tune_ease(split: Split) -> float:
    """EASE's lambda by HR@5 on the inner split (the calibration log's last holdout-length days held out)."""
    best, best_hr = EASE_LAMBDAS[0], -1.0
    for lam in EASE_LAMBDAS:
        B = ease_weights(split.X, lam)
        lists = top_lists(lambda sel, B=B: split.X[sel] @ B, split.X, split.evaluated)
        hr = per_customer(lists, split.truth, split.evaluated)[0].mean()
        if hr > best_hr:
            best, best_hr = lam, hr
    return best


def als_factors(X: sparse.csr_matrix, factors: int, regularization: float, alpha: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008): user and item factors of confidence 1 + alpha x ownership."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):  # implicit runs its own threads; a threaded BLAS inside them oversubscribes
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha, iterations=ALS_ITERATIONS,
                                        random_state=seed, calculate_training_loss=False)
        model.fit(X.astype(np.float32).tocsr(), show_progress=False)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


def tune_als(split: Split, seed: int) -> tuple[int, float, float]:
    """ALS's (factors, regularisation, alpha) among ``ALS_GRID`` by HR@5 on the inner split."""
    best, best_hr = ALS_GRID[0], -1.0
    for setting in ALS_GRID:
        U, V = als_factors(split.X, *setting, seed)
        lists = top_lists(lambda sel, U=U, V=V: U[sel] @ V.T, split.X, split.evaluated)
        hr = per_customer(lists, split.truth, split.evaluated)[0].mean()
        if hr > best_hr:
            best, best_hr = setting, hr
    return best


def ratio_interval(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    """mean(a) / mean(b) with a 95% paired bootstrap interval over customers."""
    rng = np.random.default_rng(seed)
    n = len(a)
    ratios = np.empty(n_boot)
    for r in range(n_boot):
        idx = rng.integers(0, n, n)
        ratios[r] = a[idx].mean() / max(b[idx].mean(), 1e-12)
    lo, hi = np.quantile(ratios, [0.025, 0.975])
    return float(a.mean() / b.mean()), float(lo), float(hi)


# --------------------------------------------------------------------------- the table


@contextlib.contextmanager
def timed(label: str):
    start = time.process_time()
    yield
    print(f"  {label}: {time.process_time() - start:.1f} s CPU", file=sys.stderr)


def evaluate(tx: Transactions, calibration_end: dt.date, holdout_end: dt.date, n_boot: int, seed: int) -> dict:
    holdout_days = (holdout_end - calibration_end).days
    print(f"split {calibration_end} (holdout to {holdout_end}, {holdout_days} days)", file=sys.stderr)
    with timed("clvx run on the calibration log"):
        split, run = prepare(tx, calibration_end, holdout_end, seed)
    X, rows = split.X, split.evaluated
    p = X.shape[1]
    rng = np.random.default_rng(seed)
    popularity = np.asarray(X.sum(axis=0)).ravel()
    methods: dict[str, np.ndarray] = {}
    methods["random"] = top_lists(lambda sel: rng.random((len(sel), p)), X, rows)
    methods["popularity"] = top_lists(lambda sel: np.tile(popularity, (len(sel), 1)), X, rows)
    with timed("item-kNN"):
        C = cosine_weights(X)
        methods["item-kNN (cosine)"] = top_lists(lambda sel: (X[sel] @ C).toarray(), X, rows)
    with timed("clvx run on the inner split (EASE's and ALS's tuning)"):
        inner, _ = prepare(tx, calibration_end - dt.timedelta(days=holdout_days), calibration_end, seed)
    with timed("EASE tuning on the inner split"):
        lam = tune_ease(inner)
    with timed(f"EASE (lambda {lam:g})"):
        B = ease_weights(X, lam)
        methods["EASE"] = top_lists(lambda sel: X[sel] @ B, X, rows)
    with timed("ALS tuning on the inner split"):
        als = tune_als(inner, seed)
    with timed("ALS (factors {}, regularisation {:g}, alpha {:g})".format(*als)):
        U, V = als_factors(X, *als, seed)
        methods["implicit ALS"] = top_lists(lambda sel: U[sel] @ V.T, X, rows)
    with timed("clvx ranking"):
        methods["clvx"] = evaluation_lists(run.model, rows, NDCG_K)
        methods["clvx, variants allowed"] = evaluation_lists(run.model, rows, NDCG_K, allow_variants=True)
    cal = run.model.calibration
    if cal is not None:
        places = [f"top {SPEND_RANK_EDGES[0]}", *(f"{lo + 1}-{hi}" for lo, hi in itertools.pairwise(SPEND_RANK_EDGES)), "below"]
        bands = "" if cal.rank_ratios is None else (f", spend by place in the list ({', '.join(places)}) "
                                                    + " / ".join(f"{r:.2f}" for r in cal.rank_ratios))
        print(f"  calibration: ridge {cal.ridge:g}, value ratio {cal.value_ratio:.2f}{bands}, {cal.n_customers:,} inner customers, "
              f"{cal.n_purchases:,} first purchases", file=sys.stderr)
    scores = {name: per_customer(lists, split.truth, rows) for name, lists in methods.items()}
    hr_ratio = ratio_interval(scores["clvx"][0], scores["EASE"][0], n_boot, seed)
    ndcg_ratio = ratio_interval(scores["clvx"][1], scores["EASE"][1], n_boot, seed)
    als_ratios = (ratio_interval(scores["clvx"][0], scores["implicit ALS"][0], n_boot, seed),
                  ratio_interval(scores["clvx"][1], scores["implicit ALS"][1], n_boot, seed))
    allowed = scores["clvx, variants allowed"]
    print("  clvx with variants allowed / EASE: HR@5 {:.2f} [{:.2f}, {:.2f}]".format(*ratio_interval(allowed[0], scores["EASE"][0], n_boot, seed))
          + ", NDCG@10 {:.2f} [{:.2f}, {:.2f}]".format(*ratio_interval(allowed[1], scores["EASE"][1], n_boot, seed)), file=sys.stderr)
    offers = offer_calibration(customer_targets(run.model, top_k=HR_K), split.truth, split.revenue)
    segments = segment_ranking_calibration(run.model, run.ranking, split.truth, split.revenue)
    allowed_ratios = (ratio_interval(allowed[0], scores["EASE"][0], n_boot, seed), ratio_interval(allowed[1], scores["EASE"][1], n_boot, seed))
    for note in calibration_warnings(offers, segments, holdout_days):
        print(f"  warning: {note}", file=sys.stderr)
    return {"split": split, "lambda": lam, "als": als, "als_ratios": als_ratios, "scores": scores, "hr_ratio": hr_ratio, "ndcg_ratio": ndcg_ratio,
            "allowed_ratios": allowed_ratios, "offers": offers, "segments": segments,
            "warnings": calibration_warnings(offers, segments, holdout_days)}


def markdown(results: list[dict]) -> str:
    names = ["clvx", "clvx, variants allowed", "EASE", "implicit ALS", "item-kNN (cosine)", "popularity", "random"]
    lines = [
        "| split (holdout) | customers | " + " | ".join(f"{n} HR@5" for n in names) + " | clvx / EASE HR@5 [95%] |",
        "|---|---:|" + "---:|" * len(names) + "---:|",
    ]
    for r in results:
        s = r["split"]
        ratio = "{:.2f} [{:.2f}, {:.2f}]".format(*r["hr_ratio"])
        lines.append(f"| {s.calibration_end} (to {s.holdout_end}) | {len(s.evaluated):,} | "
                     + " | ".join(f"{r['scores'][n][0].mean():.3f}" for n in names) + f" | {ratio} |")
    lines += ["", "| split (holdout) | " + " | ".join(f"{n} NDCG@10" for n in names) + " | clvx / EASE NDCG@10 [95%] | EASE lambda |",
              "|---|" + "---:|" * len(names) + "---:|---:|"]
    for r in results:
        s = r["split"]
        ratio = "{:.2f} [{:.2f}, {:.2f}]".format(*r["ndcg_ratio"])
        lines.append(f"| {s.calibration_end} (to {s.holdout_end}) | "
                     + " | ".join(f"{r['scores'][n][1].mean():.3f}" for n in names) + f" | {ratio} | {r['lambda']:g} |")
    lines += ["", "| split (holdout) | clvx / implicit ALS HR@5 [95%] | NDCG@10 [95%] | ALS factors, regularisation, alpha |", "|---|---:|---:|---:|"]
    for r in results:
        s = r["split"]
        hr, nd = r["als_ratios"]
        lines.append(f"| {s.calibration_end} (to {s.holdout_end}) | {hr[0]:.2f} [{hr[1]:.2f}, {hr[2]:.2f}] | {nd[0]:.2f} [{nd[1]:.2f}, {nd[2]:.2f}] "
                     "| {}, {:g}, {:g} |".format(*r["als"]))
    lines += ["", "| split (holdout) | clvx, variants allowed / EASE HR@5 [95%] | NDCG@10 [95%] |", "|---|---:|---:|"]
    for r in results:
        s = r["split"]
        hr, nd = r["allowed_ratios"]
        lines.append(f"| {s.calibration_end} (to {s.holdout_end}) | {hr[0]:.2f} [{hr[1]:.2f}, {hr[2]:.2f}] | {nd[0]:.2f} [{nd[1]:.2f}, {nd[2]:.2f}] |")
    lines += ["", "| split (holdout) | offers: expected buyers | actual | ratio | expected revenue | actual | ratio "
              "| segment ranking: expected buyers | actual | ratio | expected revenue | actual | ratio |",
              "|---|" + "---:|" * 12]
    for r in results:
        s = r["split"]
        o = r["offers"].filter(pl.col("decile") == "all").row(0, named=True)
        g = r["segments"].select(pl.col("expected_buyers", "actual_buyers", "expected_revenue", "actual_revenue").sum()).row(0, named=True)
        cells = []
        for t in (o, g):
            cells += [f"{t['expected_buyers']:,.0f}", f"{t['actual_buyers']:,.0f}", f"{t['expected_buyers'] / max(t['actual_buyers'], 1e-9):.2f}",
                      f"{t['expected_revenue']:,.0f}", f"{t['actual_revenue']:,.0f}", f"{t['expected_revenue'] / max(t['actual_revenue'], 1e-9):.2f}"]
        lines.append(f"| {s.calibration_end} (to {s.holdout_end}) | " + " | ".join(cells) + " |")
    lines += ["", "Offers (top 5 per customer) by score decile (10 = highest), expected / actual:", "",
              "| decile | " + " | ".join(f"{r['split'].calibration_end} buyers | revenue" for r in results) + " |",
              "|---|" + "---:|---:|" * len(results)]
    for decile in [str(d) for d in range(10, 0, -1)]:
        cells = []
        for r in results:
            row = r["offers"].filter(pl.col("decile") == decile)
            if row.height == 0:
                cells += ["", ""]
                continue
            t = row.row(0, named=True)
            cells += [f"{t['expected_buyers']:,.0f} / {t['actual_buyers']:,.0f}", f"{t['expected_revenue']:,.0f} / {t['actual_revenue']:,.0f}"]
        lines.append(f"| {decile} | " + " | ".join(cells) + " |")
    notes = [f"- {r['split'].calibration_end}: {w}" for r in results for w in r["warnings"]]
    if notes:
        lines += ["", "Misses beyond 20%, as `clvx validate` reports them:", "", *notes]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", default=str(RETAIL))
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--split", type=int, action="append", help="only these splits (1-3)")
    args = parser.parse_args()
    tx = load_transactions(args.log, RETAIL_COLUMNS)
    chosen = [SPLITS[i - 1] for i in args.split] if args.split else list(SPLITS)
    results = [evaluate(tx, c, h, args.bootstrap, args.seed) for c, h in chosen]
    print(markdown(results))


if __name__ == "__main__":
    main()
