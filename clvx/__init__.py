"""clvx's Python API: one function per analysis, typed options in, typed results out.

The command line is a thin wrapper over these functions, so anything ``clvx segment``
does can be done from Python with polars frames in and out::

    import clvx

    source = clvx.Source(input="sales.parquet", columns=clvx.ColumnMapping(customer="CustomerID"))
    result = clvx.segment(source, clv=clvx.CLVOptions(horizon=clvx.Horizon.parse("6m")))
    result.run.segmentation.profile      # one row per segment (polars DataFrame)
    result.run.segmentation.assignments  # one row per customer

Each function reads and validates the input (:class:`Source`), runs the core (``clv/``
and ``segments/``) and returns a frozen dataclass. Nothing here prints or writes files:
progress and diagnostics go to an optional :class:`Listener` (the command line's shows
them on stderr), and every result also carries its :class:`Notice` list.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import polars as pl

from clv import __version__
from clv import threads as _pools
from clv.backtest import HoldoutBacktest, ModelChoice, choose_model, holdout_backtest
from clv.database import (
    Database,
    categories_from_database,
    crosssell_from_database,
    customer_categories_of,
    is_database,
    mask,
    rfm_from_database,
)
from clv.diagnostics import HoldoutDiagnostics, holdout_diagnostics
from clv.errors import ClvxError, InputError, ModelError, option, readable
from clv.histories import is_histories, load_histories
from clv.intervals import INTERVAL_COLUMNS, CustomerIntervals, check_level, fitted_log_covariance, prediction_intervals
from clv.load import ColumnMapping, ReadOptions, Transactions, is_summary, load_summary, load_transactions, read_json
from clv.models import (
    CORRELATION_WARNING,
    ESTIMATORS,
    LOW_DROPOUT,
    GammaGamma,
    GammaGammaParams,
    Horizon,
    PurchaseParams,
    data_warnings,
    model_document,
    models_from_document,
    purchase_estimator,
    score_customers,
)
from clv.rfm import Period, ScoreBins, collect, rfm_summary, score_rfm
from clv.sample import Sample, SampleSpec, bundled_sample_path, generate
from clv.scalars import to_float, to_int
from clv.terms import DEFAULT_PURCHASE_MODEL, MODEL_LABELS, Aggregate, Dialect, PurchaseModel
from segments.aggregates import CrossSellAggregates, holdout_days
from segments.associations import MIN_BUNDLE_SUPPORT, MIN_RULE_LIFT, MIN_RULE_SUPPORT, RULES_PER_PRODUCT, TOP_BUNDLES, RuleBounds
from segments.campaign import CONTROL, CampaignMeasurement, hold_out_control, measure_campaign
from segments.crosssell import CrossSellBacktest
from segments.pipeline import (
    CROSS_SELL_HORIZON,
    BasketRun,
    CrossSellRun,
    ReportData,
    SegmentRun,
    build_report,
    crosssell_backtest,
    crosssell_bundles,
    crosssell_rules,
    crosssell_targets,
    report_from_aggregates,
    run_baskets,
    run_crosssell,
    run_segmentation,
)

__all__ = [
    "Aggregate",
    "CLVOptions",
    "CampaignOptions",
    "ClvxError",
    "ColumnMapping",
    "CrossSellOptions",
    "CrossSellResult",
    "Dialect",
    "FitResult",
    "Horizon",
    "InputError",
    "Listener",
    "MeasureResult",
    "ModelChoice",
    "ModelError",
    "ModelOptions",
    "Notice",
    "Period",
    "PredictResult",
    "PurchaseModel",
    "RFMResult",
    "ReadOptions",
    "ReportData",
    "RulesOptions",
    "RulesResult",
    "SegmentOptions",
    "SegmentResult",
    "Source",
    "ValidateResult",
    "__version__",
    "cross_sell",
    "fit",
    "load",
    "measure",
    "predict",
    "read_customer_ids",
    "report",
    "rfm",
    "rules",
    "sample",
    "segment",
    "sql",
    "threads",
    "validate",
]

DEFAULT_CLV_HORIZON = "12m"
DEFAULT_DISCOUNT_RATE = 0.10
INTERVAL_SEED = 42  # the parameter draws behind prediction intervals: the same input gives the same intervals


# --------------------------------------------------------------------------- options


@dataclass(frozen=True, kw_only=True)
class Source:
    """Where the transaction log (or an RFM summary) is and how to read it.

    ``input`` is a CSV or Parquet file, a glob of them, or a list of paths; ``None``
    reads the bundled sample. It may also be a database URI (``postgresql://user@host/db``,
    ``duckdb:///path/to.db``) with the log's ``table`` or a SELECT in ``query``: the
    aggregates are then computed inside the database (:mod:`clv.database`). ``as_of`` ends the observation (later rows are excluded).
    ``read`` says how to decode odd files (encoding, decimal comma, time zone) and which
    odd rows to keep; ``exclude`` lists files a glob must not match.
    """

    input: str | Path | Sequence[str | Path] | None = None
    columns: ColumnMapping = field(default_factory=ColumnMapping)
    as_of: dt.date | None = None
    read: ReadOptions = field(default_factory=ReadOptions)
    exclude: tuple[str | Path, ...] = ()  # files a glob INPUT must not read (the run's own outputs)
    table: str | None = None  # with a database INPUT: the table of order lines (schema.table)
    query: str | None = None  # with a database INPUT: a SELECT that returns the order lines

    @property
    def database(self) -> Database | None:
        """The database INPUT (URI with its table or query), or None for files and the sample."""
        if is_database(self.input):
            assert isinstance(self.input, str)
            return Database(self.input, self.table, self.query)
        if self.table is not None or self.query is not None:
            raise InputError(f"{option('table')} and {option('query')} go with a database INPUT such as postgresql://user@host/db "
                             "or duckdb:///path/to.db")
        return None

    @property
    def label(self) -> str:
        if self.input is None:
            return str(bundled_sample_path())
        if is_database(self.input):
            assert isinstance(self.input, str)
            return mask(self.input)
        if isinstance(self.input, (str, Path)):
            return str(self.input)
        return ", ".join(map(str, self.input))

    def location(self) -> str | Path | Sequence[str | Path]:
        return bundled_sample_path() if self.input is None else self.input


@dataclass(frozen=True, kw_only=True)
class ModelOptions:
    """Which purchase model, and how it and Gamma-Gamma are fitted: the time unit, an L2 penalty, the engine.

    ``model`` is ``bgnbd``, ``mbgnbd``, ``pareto`` or ``auto`` (each fitted on the log
    less its last third, scored on that third, the best refitted on everything; see
    :func:`clv.backtest.choose_model`).
    """

    period: Period | None = None  # None: day, or a saved model's period
    penalizer: float = 0.0
    engine: Literal["auto", "lifetimes", "numpy"] = "auto"
    model: PurchaseModel = DEFAULT_PURCHASE_MODEL

    @property
    def unit(self) -> Period:
        """The period to fit in: the one given, else day."""
        return self.period or Period.day


@dataclass(frozen=True, kw_only=True)
class CLVOptions:
    """The CLV horizon and the annual discount rate, the same for every command that computes CLV.

    ``interval`` (a level in (0, 1), e.g. 0.9; None: none) adds per-customer prediction
    intervals of purchases and CLV over the horizon to :func:`predict`.
    """

    horizon: Horizon = field(default_factory=lambda: Horizon.parse(DEFAULT_CLV_HORIZON))
    discount_rate: float = DEFAULT_DISCOUNT_RATE
    interval: float | None = None


@dataclass(frozen=True, kw_only=True)
class SegmentOptions:
    """k-means (``k=None``: chosen by silhouette among stable solutions) or the named RFM segments."""

    method: Literal["kmeans", "rfm"] = "kmeans"
    k: int | None = None
    seed: int = 42


@dataclass(frozen=True, kw_only=True)
class CrossSellOptions:
    """What cross-sell ranks and returns.

    ``top`` products per segment; with ``targets``, ``top_k`` offers per customer
    (at most ``max_offers``); with ``rules``, the association rules.
    """

    top: int = 5
    top_k: int = 5
    max_offers: int | None = None
    allow_substitutes: bool = False
    allow_variants: bool = False
    exclude_products: str | None = None
    offer_horizon: Horizon = CROSS_SELL_HORIZON
    targets: bool = False
    rules: bool = False
    min_support: float = MIN_RULE_SUPPORT  # rules: share of customers owning both
    min_lift: float = MIN_RULE_LIFT
    rules_per_product: int = RULES_PER_PRODUCT
    bundles: bool = False
    bundle_min_support: float = MIN_BUNDLE_SUPPORT  # bundles: share of orders holding the set
    top_bundles: int = TOP_BUNDLES
    control: float = 0.0  # share of targeted customers held out as a control group
    seed: int = 42  # of the control group draw
    exclude_customers: str | Path | None = None  # opt-outs: never in any export


@dataclass(frozen=True, kw_only=True)
class RulesOptions:
    """Which association rules (and, with ``bundles``, which bundles) :func:`rules` returns: cross-sell's bounds."""

    exclude_products: str | None = None
    min_support: float = MIN_RULE_SUPPORT  # share of customers owning both
    min_lift: float = MIN_RULE_LIFT
    rules_per_product: int = RULES_PER_PRODUCT
    bundles: bool = False
    bundle_min_support: float = MIN_BUNDLE_SUPPORT  # share of orders holding the set
    top_bundles: int = TOP_BUNDLES

    @property
    def bounds(self) -> RuleBounds:
        return RuleBounds(min_support=self.min_support, min_lift=self.min_lift, per_product=self.rules_per_product)


def threads(n: int | None = None) -> AbstractContextManager[int]:
    """Run the analyses inside the ``with`` block with ``n`` threads for k-means and the model fits.

    ``None`` keeps the default: the ``CLVX_THREADS`` environment variable, else the CPUs
    this process may run on. The OpenMP and BLAS pools are capped at ``n`` around each
    step that uses them. polars sizes its pool once, when it is imported: set
    ``POLARS_MAX_THREADS`` (and ``OMP_WAIT_POLICY=PASSIVE``, so idle OpenMP threads sleep)
    before importing polars or clvx to size it too; the command line does both::

        with clvx.threads(1):
            result = clvx.segment(source)
    """
    return _pools.use(n)


# --------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class Notice:
    """A diagnostic about the data or a fit: ``info`` (what was done) or ``warning`` (what to doubt).

    ``marked`` names options as :func:`clv.errors.option` does, for a front end to spell
    them its own way; ``text`` is the notice as a Python user reads it.
    """

    level: Literal["info", "warning"]
    marked: str

    @property
    def text(self) -> str:
        return readable(self.marked)


class Listener(Protocol):
    """Receives progress as an analysis runs; the command line's prints it on stderr."""

    def step(self, description: str, total: float | None = None) -> AbstractContextManager[object]:
        """A context for one step; ``total`` (when known) is how many units its ``advance()`` will count."""
        ...

    def loaded(self, transactions: Transactions) -> None: ...

    def summary_read(self, source: str, n_customers: int, period: Period) -> None: ...

    def notice(self, notice: Notice) -> None: ...


class Silent:
    """The default listener: hears everything, says nothing."""

    def step(self, description: str, total: float | None = None) -> AbstractContextManager[object]:
        return nullcontext()

    def loaded(self, transactions: Transactions) -> None:
        pass

    def summary_read(self, source: str, n_customers: int, period: Period) -> None:
        pass

    def notice(self, notice: Notice) -> None:
        pass


class _Recording:
    """A listener that keeps every notice of one analysis, for its result, and passes everything on."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.items: list[Notice] = []

    def step(self, description: str, total: float | None = None) -> AbstractContextManager[object]:
        return self.listener.step(description, total)

    def loaded(self, transactions: Transactions) -> None:
        self.listener.loaded(transactions)

    def summary_read(self, source: str, n_customers: int, period: Period) -> None:
        self.listener.summary_read(source, n_customers, period)

    def notice(self, notice: Notice) -> None:
        self.items.append(notice)
        self.listener.notice(notice)

    def extend(self, notices: Sequence[Notice]) -> None:
        for n in notices:
            self.notice(n)

    def tuple(self) -> tuple[Notice, ...]:
        return tuple(self.items)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RFMResult:
    summary: pl.DataFrame  # one row per customer: frequency, recency, T, monetary_value[, scores]
    period: Period
    bins: ScoreBins | None
    transactions: Transactions | None  # None when a database computed the summary
    notices: tuple[Notice, ...]


@dataclass(frozen=True)
class Summarized:
    """An RFM summary: computed from a transaction log, or read from a summary file."""

    summary: pl.DataFrame
    period: Period
    transactions: Transactions | None
    from_histories: bool = False  # rebuilt from a histories file: right for a fit, no real customer ids


class _PurchaseFit:
    """``bgnbd``: the purchase model's fit under its name from before there were three models."""

    purchase_model: PurchaseParams

    @property
    def bgnbd(self) -> PurchaseParams:
        return self.purchase_model


def with_covariance(model: PurchaseParams, customers: pl.DataFrame) -> PurchaseParams:
    """``model`` carrying its log-parameters' covariance on the ``customers`` it was fitted on, so
    that intervals from the saved model hold the fit's own uncertainty."""
    if model.log_covariance is not None:
        return model
    x, tx, T = (customers[c].cast(pl.Float64).to_numpy() for c in ("frequency", "recency", "T"))
    cov = fitted_log_covariance(model.MODEL, model.params, x, tx, T)
    return model if cov is None else replace(model, log_covariance=tuple(tuple(float(v) for v in row) for row in cov))


@dataclass(frozen=True)
class FitResult(_PurchaseFit):
    purchase_model: PurchaseParams  # BG/NBD, MBG/NBD or Pareto/NBD: its ``label`` says which
    gamma_gamma: GammaGammaParams
    period: Period
    data: Summarized
    notices: tuple[Notice, ...]
    choice: ModelChoice | None = None  # how ``auto`` chose, when it did

    def document(self) -> dict:
        """The fitted models as a JSON-ready document (what ``clvx fit --save`` writes), with the
        purchase model's covariance for intervals."""
        return model_document(with_covariance(self.purchase_model, self.data.summary), self.gamma_gamma, period=self.period.value,
                              clvx_version=__version__)


@dataclass(frozen=True)
class PredictResult(_PurchaseFit):
    scores: pl.DataFrame  # the RFM summary plus p_alive, churn_risk, expected purchases and spend, clv[, the interval columns]
    purchase_model: PurchaseParams
    gamma_gamma: GammaGammaParams
    period: Period
    clv: CLVOptions
    data: Summarized
    notices: tuple[Notice, ...]
    choice: ModelChoice | None = None
    intervals: CustomerIntervals | None = None  # with clv.interval: the levels' bounds and their own coverage


@dataclass(frozen=True)
class ValidateResult:
    backtest: HoldoutBacktest
    cross_sell: CrossSellBacktest | None
    transactions: Transactions
    notices: tuple[Notice, ...]
    choice: ModelChoice | None = None
    diagnostics: HoldoutDiagnostics | None = None  # interval coverage, PIT, tracking, deciles


@dataclass(frozen=True)
class SegmentResult:
    run: SegmentRun
    transactions: Transactions | None  # None when the input was an RFM summary or a database
    notices: tuple[Notice, ...]
    choice: ModelChoice | None = None

    def document(self) -> dict:
        """The fitted models and, for k-means, the segments' scaling and centres (``clvx segment --save``).

        A model.json as ``clvx fit --save`` writes it with a ``segments`` section added, so
        ``clvx predict --saved-model`` reads it and clvx/spark.py segments customers with it.
        """
        run = self.run
        doc = model_document(with_covariance(run.purchase_model, run.segmentation.assignments), run.gamma_gamma,
                             period=run.period.value, clvx_version=__version__)
        centres = run.segmentation.centres
        if centres is not None:
            doc["segments"] = {"method": "kmeans", "horizon": run.horizon.label, "discount_rate": run.discount_rate, **centres.to_dict()}
        return doc


@dataclass(frozen=True)
class CrossSellResult:
    run: CrossSellRun
    targets: pl.DataFrame | None
    rules: pl.DataFrame | None
    transactions: Transactions | None  # None when a database computed the aggregates
    notices: tuple[Notice, ...]
    choice: ModelChoice | None = None
    bundles: pl.DataFrame | None = None
    opted_out: int = 0  # customers of the log left out of every export by exclude_customers


@dataclass(frozen=True)
class RulesResult:
    run: BasketRun
    rules: pl.DataFrame
    transactions: Transactions
    notices: tuple[Notice, ...]
    bundles: pl.DataFrame | None = None


@dataclass(frozen=True)
class ReportResult:
    data: ReportData
    transactions: Transactions | None  # None when the report was built from aggregates
    notices: tuple[Notice, ...]
    choice: ModelChoice | None = None


# --------------------------------------------------------------------------- shared steps


def load(source: Source, listener: Listener | None = None, *, need: Sequence[str] = ()) -> Transactions:
    """Read and validate the transaction log; ``need`` names roles the analysis requires (e.g. ``product``)."""
    listener = listener or Silent()
    if source.database is not None:
        raise InputError(f"{source.label}: this command needs the order lines, which clvx does not pull out of a database; "
                         "rfm, fit, predict, segment and cross-sell run on a database INPUT, or export the log to Parquet")
    if is_aggregates_folder(source):
        raise InputError(f"{source.label}: this command needs the order lines, not a folder of aggregates; "
                         "segment and cross-sell read aggregates, or give the log's file")
    if source.input is None:
        listener.notice(Notice("info", "No INPUT given: using the bundled sample (a synthetic log); give a file or a glob to use yours."))
    with listener.step("Reading and checking the transaction log"):
        tx = load_transactions(source.location(), source.columns, as_of=source.as_of, options=source.read,
                               exclude=source.exclude)
    for role in need:
        if getattr(tx.columns, role) is None:
            raise InputError(f"this command needs a {role} column; name it with {option(f'{role}_col')}")
    for note in tx.notes:
        listener.notice(Notice("warning", note))
    listener.loaded(tx)
    return tx


def summarize(source: Source, period: Period, listener: Listener | None = None) -> Summarized:
    """RFM per customer: computed from a transaction log, or read from an RFM summary file."""
    listener = listener or Silent()
    db = source.database
    if db is not None:
        with listener.step("Computing the RFM summary in the database"):
            summary = rfm_from_database(db, source.columns, as_of=source.as_of, period=period,
                                        keep_placeholder_ids=source.read.keep_placeholder_ids)
        listener.summary_read(db.label, summary.height, period)
        return Summarized(summary, period, None)
    location = source.location()
    if isinstance(location, (str, Path)) and source.input is not None and is_histories(location, source.read, exclude=source.exclude):
        with listener.step("Reading the histories"):
            summary = load_histories(location, source.read, exclude=source.exclude)
        listener.summary_read(str(location), summary.height, period)
        return Summarized(summary, period, None, from_histories=True)
    if isinstance(location, (str, Path)) and source.input is not None and is_summary(location, source.read, exclude=source.exclude):
        with listener.step("Reading the RFM summary"):
            summary = load_summary(location, source.columns.customer, options=source.read, exclude=source.exclude)
        listener.summary_read(str(location), summary.height, period)
        return Summarized(summary, period, None)
    tx = load(source, listener)
    with listener.step("Computing RFM"):
        summary = collect(rfm_summary(tx.frame, tx.as_of, period))
    return Summarized(summary, period, tx)


def _is_summary_file(source: Source) -> bool:
    location = source.location()
    return isinstance(location, (str, Path)) and source.input is not None and is_summary(location, source.read, exclude=source.exclude)


def fit_notices(purchases: PurchaseParams, gamma_gamma: GammaGammaParams) -> list[Notice]:
    """What a user should know about a fit before trusting its forecast."""
    out = []
    dropout = purchases.dropout_per_purchase
    if dropout < LOW_DROPOUT:
        what = "a/(a+b)" if purchases.MODEL != "pareto" else "E[mu/(lambda+mu)]"
        out.append(Notice("warning", (
            f"{purchases.label} finds almost no dropout (mean chance of leaving before the next purchase {what} = {dropout:.2g}), "
            "so P(alive) is near 1 for nearly everyone; the log may be too short to see customers leave")))
    if not purchases.converged:
        out.append(Notice("warning", (
            f"{purchases.label}: the optimiser found no proper maximum (it did not converge, or the Hessian there is not "
            "positive definite), so the parameters and their standard errors are not to be trusted")))
    if gamma_gamma.n_excluded:
        out.append(Notice("info", (
            f"Gamma-Gamma: {gamma_gamma.n_excluded:,} repeat customers with zero or negative spend were left out of the fit.")))
    if gamma_gamma.note:
        out.append(Notice("warning", gamma_gamma.note))
    for model, params in ((purchases.label, purchases), ("Gamma-Gamma", gamma_gamma)):
        if params.poorly_identified:
            names = " and ".join(params.poorly_identified)
            one = len(params.poorly_identified) == 1
            out.append(Notice("warning", (
                f"{model} {names} {'is' if one else 'are'} poorly identified (standard error above the estimate): the data "
                f"barely constrain {'it' if one else 'them'}, so forecasts that lean on {'it' if one else 'them'} are uncertain")))
    if abs(gamma_gamma.frequency_spend_correlation) > CORRELATION_WARNING:
        out.append(Notice("warning", (
            f"spend and frequency are correlated (r = {gamma_gamma.frequency_spend_correlation:.2f}); Gamma-Gamma assumes "
            "they are independent, so expected spend may be biased")))
    return out


def data_notices(customers: pl.DataFrame, *, history_days: float) -> list[Notice]:
    """Warnings when the log is below the minimum for reliable CLV and churn (few customers, short history)."""
    return [Notice("warning", w.message) for w in data_warnings(customers, history_days)]


def _log_days(tx: Transactions) -> float:
    """Days from the log's first purchase to the end of observation."""
    first = tx.quality.first_date
    return float((tx.as_of - first.date()).days + 1) if first is not None else 0.0


def _history_days(data: Summarized) -> float:
    """The history behind a summary: the log's span, else (a summary file) the oldest customer's T in days."""
    if data.transactions is not None and data.transactions.quality.first_date is not None:
        return _log_days(data.transactions)
    return to_float(data.summary["T"].max(), null=0.0) * data.period.days


def _fit_models(
    summary: pl.DataFrame, model: ModelOptions, listener: Listener, tx: Transactions | None = None, name: str | None = None,
) -> tuple[PurchaseParams, GammaGammaParams, ModelChoice | None]:
    """The purchase model (``name``, else ``model.model``; ``auto`` chosen first) and Gamma-Gamma, fitted on ``summary``."""
    choice = None
    if name is None:
        name, choice = resolve_model(model, listener, tx, summary)
    estimator = purchase_estimator(name, penalizer=model.penalizer, engine=model.engine)
    with listener.step(f"Fitting {estimator.label}"):
        fit = estimator.fit(summary).params_
    with listener.step("Fitting Gamma-Gamma"):
        gg = GammaGamma(penalizer=model.penalizer, engine=model.engine).fit(summary).params_
    assert not isinstance(fit, GammaGammaParams)
    return fit, gg, choice


def resolve_model(
    model: ModelOptions, listener: Listener, tx: Transactions | None, summary: pl.DataFrame | None = None,
) -> tuple[str, ModelChoice | None]:
    """The purchase model to fit: the one asked for, or the one ``auto`` picks (with how it picked).

    ``auto`` on a transaction log holds back its last third (:func:`clv.backtest.choose_model`);
    on an RFM summary file, which has no dates to split, it takes the highest log-likelihood
    (all three models have four parameters) and says so.
    """
    if model.model is not PurchaseModel.auto:
        return model.model.value, None
    if tx is not None and tx.quality.first_date is not None:
        with listener.step("Choosing the purchase model on the last third of the log"):
            choice = choose_model(tx.frame, tx.quality.first_date.date(), tx.as_of, model.unit,
                                  penalizer=model.penalizer, engine=model.engine)
        best = next(sc for sc in choice.scores if sc.model == choice.chosen)
        listener.notice(Notice("info", (
            f"{option('model', 'auto')} chose {choice.label}: fitted on the log to {choice.split_end} and scored on the "
            f"{choice.duration_holdout} {model.unit.value}s after it, per-customer MAE {best.mae:.4f}, total bias {best.bias:+.2%}; "
            f"{option('explain')} shows every model")))
        return choice.chosen, choice
    assert summary is not None
    with listener.step("Choosing the purchase model by log-likelihood"):
        fits = {}
        for name in ESTIMATORS:
            try:
                fits[name] = purchase_estimator(name, penalizer=model.penalizer, engine=model.engine, standard_errors=False).fit(summary).params_
            except ModelError:
                continue
    if not fits:
        raise ModelError(f"no purchase model fitted this summary; choose a {option('model')} and see its error")
    chosen = max(fits, key=lambda n: fits[n].log_likelihood)
    listener.notice(Notice("info", (
        f"{option('model', 'auto')} chose {MODEL_LABELS[chosen]} by log-likelihood ({fits[chosen].log_likelihood:,.2f}): "
        "an RFM summary has no dates to hold back, so no holdout score")))
    return chosen, None


# --------------------------------------------------------------------------- analyses


def rfm(source: Source, *, period: Period = Period.day, scores: bool = True, listener: Listener | None = None) -> RFMResult:
    """Frequency, recency, T and monetary value per customer (lifetimes' conventions), with RFM scores."""
    listener = _Recording(listener or Silent())
    tx: Transactions | None = None
    if source.database is not None:
        summary = summarize(source, period, listener).summary
    else:
        tx = load(source, listener)
        with listener.step("Computing RFM"):
            summary = collect(rfm_summary(tx.frame, tx.as_of, period))
    columns = ["customer_id", "frequency", "recency", "T", "monetary_value"]
    bins = None
    if scores:
        summary, bins = score_rfm(summary, period)
        columns += ["r_score", "f_score", "m_score", "rfm_segment"]
    return RFMResult(summary.select(columns), period, bins, tx, listener.tuple())


def fit(source: Source, *, model: ModelOptions = ModelOptions(), listener: Listener | None = None) -> FitResult:
    """Fit the purchase model (BG/NBD, MBG/NBD, Pareto/NBD, or the one ``auto`` picks) and Gamma-Gamma."""
    listener = _Recording(listener or Silent())
    data = summarize(source, model.unit, listener)
    listener.extend(data_notices(data.summary, history_days=_history_days(data)))
    bg, gg, choice = _fit_models(data.summary, model, listener, data.transactions)
    listener.extend(fit_notices(bg, gg))
    return FitResult(bg, gg, model.unit, data, listener.tuple(), choice)


def predict(
    source: Source,
    *,
    model: ModelOptions = ModelOptions(),
    clv: CLVOptions = CLVOptions(),
    saved_model: str | Path | None = None,
    listener: Listener | None = None,
) -> PredictResult:
    """P(alive), expected purchases and spend, and discounted CLV per customer.

    With ``saved_model`` (a file written by ``clvx fit --save``), the saved parameters
    score the input instead of a new fit; its period is used. With ``clv.interval``, the
    scores also get ``purchases_low, purchases_high, clv_low, clv_high`` (see
    :func:`clv.intervals.prediction_intervals`).
    """
    listener = _Recording(listener or Silent())
    if clv.interval is not None:
        check_level(clv.interval)
    choice = None
    if saved_model is not None:
        saved_period, bg, gg = models_from_document(read_json(saved_model), str(saved_model))
        period = Period(saved_period)
        if model.period is not None and model.period is not period:
            raise InputError(f"{option('period', model.period.value)} differs from the saved model's period ({saved_period}); "
                             f"drop {option('period')}")
        data = summarize(source, period, listener)
    else:
        period = model.unit
        data = summarize(source, period, listener)
        listener.extend(data_notices(data.summary, history_days=_history_days(data)))
        bg, gg, choice = _fit_models(data.summary, model, listener, data.transactions)
        listener.extend(fit_notices(bg, gg))
    if data.from_histories:
        raise InputError(f"{source.label} holds histories (counts of customers), which fit the models but name no customer; "
                         "score an RFM summary or the log, e.g. with the models saved by clvx fit --save")
    with listener.step("Scoring customers"):
        scores = score_customers(data.summary, bg, gg, period_days=period.days, horizon=clv.horizon,
                                 annual_discount_rate=clv.discount_rate)
    intervals = None
    if clv.interval is not None:
        with listener.step("Computing prediction intervals"):
            scores, intervals = _with_intervals(scores, bg, period, clv)
        listener.notice(Notice("info", _interval_note(intervals, clv, saved=saved_model is not None, known=bg.log_covariance is not None)))
    return PredictResult(scores, bg, gg, period, clv, data, listener.tuple(), choice, intervals)


def _with_intervals(scores: pl.DataFrame, bg: PurchaseParams, period: Period, clv: CLVOptions) -> tuple[pl.DataFrame, CustomerIntervals]:
    assert clv.interval is not None
    x, tx, T = (scores[c].cast(pl.Float64).to_numpy() for c in ("frequency", "recency", "T"))
    ci = prediction_intervals(
        bg.MODEL, bg.params, x, tx, T, t=clv.horizon.periods(period.days), level=clv.interval,
        expected_purchases=scores["expected_purchases"].to_numpy(), clv=scores["clv"].to_numpy(), seed=INTERVAL_SEED,
        known_covariance=None if bg.log_covariance is None else np.array(bg.log_covariance),
    )
    values = (ci.purchases_low, ci.purchases_high, ci.clv_low, ci.clv_high)
    return scores.with_columns(pl.Series(n, v) for n, v in zip(INTERVAL_COLUMNS, values, strict=True)), ci


def _interval_note(ci: CustomerIntervals, clv: CLVOptions, *, saved: bool, known: bool = False) -> str:
    how = {
        "covariance": "parameter uncertainty from the fit's covariance (log scale)",
        "bootstrap": "parameter uncertainty from refits on resampled customers (the optimum is on a boundary)",
        "none": "no parameter uncertainty (it could not be estimated)",
    }[ci.draws.method]
    if saved and ci.draws.method == "covariance" and known:
        how += ", saved with the model"
    where = " on the scored customers" if saved and ci.draws.method != "none" and not known else ""
    return (
        f"Prediction intervals ({ci.level:.0%}): purchases over {clv.horizon.label} from the model's predictive "
        f"distribution per customer, with {how}{where}; as whole counts they hold {float(ci.implied.mean()):.1%} "
        "on average. CLV interval = purchase interval x expected spend, discounted as the CLV."
    )


def validate(
    source: Source,
    *,
    calibration_end: dt.date,
    model: ModelOptions = ModelOptions(),
    cross_sell: bool = True,
    exclude_products: str | None = None,
    seed: int = 42,
    intervals: bool = True,
    listener: Listener | None = None,
) -> ValidateResult:
    """Fit on the log up to ``calibration_end``, forecast the rest, compare with naive baselines.

    With a product column and ``cross_sell``, also backtest the cross-sell ranking. With
    ``intervals``, also the diagnostics of :mod:`clv.diagnostics`: interval coverage at 50/80/90%
    beside the coverage the model implies, a PIT table, the total's interval, the tracking data
    and a calibration-by-decile table; their misses become warnings.
    """
    listener = _Recording(listener or Silent())
    tx = load(source, listener)
    _check_calibration_end(calibration_end, tx)
    # The calibration side is read as if the log ended at calibration_end: a return after it must not
    # be netted against a calibration purchase (predict --as-of sees the same calibration spend).
    with listener.step("Reading the calibration period on its own"):
        cal_tx = load_transactions(source.location(), source.columns, as_of=calibration_end, options=source.read,
                                   exclude=source.exclude)
    day_after = calibration_end + dt.timedelta(days=1)
    frame = pl.concat([cal_tx.frame.filter(pl.col("date") < pl.lit(day_after)),
                       tx.frame.filter(pl.col("date") >= pl.lit(day_after))], how="vertical_relaxed")
    name, choice = resolve_model(model, listener, cal_tx)
    with listener.step("Fitting on the calibration period and scoring the holdout"):
        result = holdout_backtest(frame, calibration_end, tx.as_of, model.unit, penalizer=model.penalizer,
                                  engine=model.engine, model=name)
    for why in result.model_errors.values():
        listener.notice(Notice("warning", f"not compared: {why}"))
    listener.extend(fit_notices(result.purchase_model, result.gamma_gamma))
    diagnostics = None
    if intervals:
        with listener.step("Checking the prediction intervals and tracking on the holdout"):
            diagnostics = holdout_diagnostics(tx.frame, calibration_end, tx.as_of, model.unit, model=result.purchase_model.MODEL,
                                              params=result.purchase_model.params, seed=seed)
        listener.extend([Notice("warning", w) for w in diagnostics.warnings])
    cross = None
    if cross_sell and tx.has("product_id"):
        with listener.step("Backtesting cross-sell targets"):
            # Same calibration summary as the forecast backtest: reuse its fitted models.
            cross = crosssell_backtest(tx, calibration_end, exclude_products=exclude_products, seed=seed,
                                       period=model.unit, models=(result.purchase_model, result.gamma_gamma))
        listener.extend([Notice("warning", w) for w in cross.warnings])
    return ValidateResult(result, cross, tx, listener.tuple(), choice, diagnostics)


def _check_calibration_end(calibration_end: dt.date, tx: Transactions) -> None:
    """The calibration period must hold purchases and leave a holdout: checked before any fit."""
    first = tx.quality.first_date.date() if tx.quality.first_date else None
    if first is not None and calibration_end < first:
        raise InputError(f"{option('calibration_end', calibration_end)} is before the first transaction ({first}); "
                         "choose a date inside the log")
    if calibration_end >= tx.as_of:
        raise InputError(f"{option('calibration_end', calibration_end)} leaves no holdout: the log ends {tx.as_of}; "
                         "choose an earlier date")


def segment(
    source: Source,
    *,
    model: ModelOptions = ModelOptions(),
    clv: CLVOptions = CLVOptions(),
    segments: SegmentOptions = SegmentOptions(),
    exclude_customers: str | Path | None = None,
    listener: Listener | None = None,
) -> SegmentResult:
    """Customer segments a marketer can name, profiled by size, revenue, CLV and churn risk.

    With ``exclude_customers`` (a file of opted-out ids) the assignments leave those
    customers out; the segments and their profile are still fitted on everyone.
    """
    listener = _Recording(listener or Silent())
    tx: Transactions | None = None
    db = source.database
    folder = is_aggregates_folder(source)
    summary_input = db is not None or folder or _is_summary_file(source)
    categories = None
    if folder:
        aggregates = folder_aggregates(source, period=model.unit, cross_sell=False, listener=listener)
        data: Summarized | None = Summarized(aggregates.summary, model.unit, None)
        categories = aggregates.categories
    else:
        data = summarize(source, model.unit, listener) if summary_input else None
    if data is None:
        tx = load(source, listener)
    elif "total_spend" not in data.summary.columns:  # before any model is fitted on it
        raise InputError(f"{source.label}: segments need each customer's total_spend; compute the summary with clvx sql rfm "
                         "or clvx rfm, or pass the transaction log")
    name, choice = resolve_model(model, listener, tx, data.summary if data is not None else None)
    options = dict(model=name, period=model.unit, method=segments.method, k=segments.k, seed=segments.seed, penalizer=model.penalizer,
                   engine=model.engine, discount_rate=clv.discount_rate, horizon=clv.horizon, step=listener.step)
    if data is not None:
        if db is not None:
            with listener.step("Counting customers' categories in the database"):
                categories = categories_from_database(db, source.columns, as_of=source.as_of,
                                                      keep_placeholder_ids=source.read.keep_placeholder_ids)
        run = run_segmentation(None, summary=data.summary, categories=categories, **options)  # type: ignore[arg-type]
        history_days = _history_days(data)
    else:
        assert tx is not None
        run = run_segmentation(tx, **options)  # type: ignore[arg-type]
        history_days = _log_days(tx)
    if exclude_customers is not None:
        opted_out = read_customer_ids(exclude_customers, tx)
        kept = _without_opt_outs(run.segmentation.assignments, opted_out, "assignments", listener)
        run = replace(run, segmentation=replace(run.segmentation, assignments=kept))
    listener.extend(data_notices(run.segmentation.assignments, history_days=history_days))
    listener.extend(fit_notices(run.purchase_model, run.gamma_gamma))
    return SegmentResult(run, tx, listener.tuple(), choice)


def cross_sell(
    source: Source | Aggregates,
    *,
    model: ModelOptions = ModelOptions(),
    clv: CLVOptions = CLVOptions(),
    segments: SegmentOptions = SegmentOptions(),
    offers: CrossSellOptions = CrossSellOptions(),
    listener: Listener | None = None,
) -> CrossSellResult:
    """Who should be offered which product: a ranking per segment, offers per customer, rules.

    ``source`` is a log (a file, the sample, a database whose aggregates are computed
    there), or :class:`Aggregates` computed elsewhere (``clvx.spark.aggregates``): the
    same aggregates give the same offers.
    """
    listener = _Recording(listener or Silent())
    tx: Transactions | None = None
    options: dict = {}
    if isinstance(source, Source) and source.database is not None:
        source = database_aggregates(source, offers, period=model.unit, listener=listener)
    elif isinstance(source, Source) and is_aggregates_folder(source):
        source = folder_aggregates(source, period=model.unit, listener=listener)
    if isinstance(source, Aggregates):
        if source.cross_sell is None:
            raise InputError(f"{source.label}: cross-sell reads the purchases and catalogue aggregates; compute them with clvx sql")
        if "total_spend" not in source.summary.columns:
            raise InputError(f"{source.label}: cross-sell needs each customer's total_spend in the RFM summary; compute it with clvx sql rfm")
        options = {"summary": source.summary, "categories": source.categories, "aggregates": source.cross_sell}
        history_days = to_float(source.summary["T"].max(), null=0.0) * source.period.days
    else:
        tx = load(source, listener, need=("product",))
        history_days = _log_days(tx)
    name, choice = resolve_model(model, listener, tx, options.get("summary"))
    run = run_crosssell(
        tx, exclude_products=offers.exclude_products, offer_horizon=offers.offer_horizon, top=offers.top, period=model.unit,
        method=segments.method, k=segments.k, seed=segments.seed, penalizer=model.penalizer, engine=model.engine,
        discount_rate=clv.discount_rate, horizon=clv.horizon, step=listener.step, model=name, **options,
    )
    listener.extend(data_notices(run.segments.segmentation.assignments, history_days=history_days))
    listener.extend(fit_notices(run.segments.purchase_model, run.segments.gamma_gamma))
    targets = rules = bundles = None
    opted_out = read_customer_ids(offers.exclude_customers, tx) if offers.exclude_customers is not None else None
    if offers.targets:
        with listener.step("Scoring offers per customer", total=1.0) as progress:
            targets = crosssell_targets(run, top_k=offers.top_k, max_offers=offers.max_offers,
                                        allow_substitutes=offers.allow_substitutes, allow_variants=offers.allow_variants,
                                        advance=getattr(progress, "advance", None))
        if opted_out is not None:
            targets = _without_opt_outs(targets, opted_out, "offers", listener)
        if offers.control > 0:
            targets = hold_out_control(targets, offers.control, seed=offers.seed)
            n_control = targets.filter(pl.col("group") == CONTROL)["customer_id"].n_unique()
            listener.notice(Notice("info", (
                f"Control group: {n_control:,} of {targets['customer_id'].n_unique():,} targeted customers "
                f"({offers.control:.0%} of each segment, seed {offers.seed}) are marked group = control: do not contact them; "
                "measure the campaign with clvx measure")))
    if offers.rules:
        bounds = RuleBounds(min_support=offers.min_support, min_lift=offers.min_lift, per_product=offers.rules_per_product)
        rules = _bounded_rules(run, bounds, listener)
    if offers.bundles:
        bundles = _bundles(run, offers.bundle_min_support, offers.top_bundles, listener)
    assignments = run.segments.segmentation.assignments
    return CrossSellResult(run, targets, rules, tx, listener.tuple(), bundles=bundles,
                           opted_out=_opted_out_count(assignments, opted_out), choice=choice)


@dataclass(frozen=True)
class Aggregates:
    """A log's aggregates computed where it lives (a database, a warehouse, Spark): what the analyses read instead of its lines.

    ``summary`` is the ``rfm`` aggregate (with ``total_spend``), ``categories`` the
    (customer_id, category) pairs of the ``products`` aggregate (None: segments without
    categories), ``cross_sell`` the purchases, catalogue and baskets of
    :mod:`segments.aggregates`. :func:`cross_sell` on these gives the offers of the log.
    """

    summary: pl.DataFrame
    categories: pl.DataFrame | None
    cross_sell: CrossSellAggregates | None
    label: str = "aggregates"
    period: Period = Period.day


AGGREGATE_FILES = ("rfm", "products", "purchases", "catalogue", "baskets")  # a folder of aggregates: <name>.parquet or <name>.csv
AGGREGATE_IDS = ("customer_id", "product_id", "order_id", "category", "description")  # read as text, exactly as written


def is_aggregates_folder(source: Source) -> bool:
    """True when ``source.input`` is a folder (of aggregates computed elsewhere) rather than a file or a glob."""
    return isinstance(source.input, (str, Path)) and not is_database(source.input) and Path(source.input).is_dir()


def _aggregate_file(folder: Path, name: str) -> Path | None:
    found = [folder / f"{name}{suffix}" for suffix in (".parquet", ".csv") if (folder / f"{name}{suffix}").is_file()]
    return found[0] if found else None


def _read_aggregate(path: Path) -> pl.DataFrame:
    try:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            return frame.with_columns(pl.col(c).cast(pl.String) for c in AGGREGATE_IDS if c in frame.columns)
        return pl.read_csv(path, schema_overrides={c: pl.String for c in AGGREGATE_IDS}, encoding="utf8-lossy")
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read as an aggregate ({str(exc).splitlines()[0]}); export the query's rows as Parquet or CSV") from None


def folder_aggregates(source: Source, *, period: Period = Period.day, cross_sell: bool = True,
                      listener: Listener | None = None) -> Aggregates:
    """A folder of aggregates (``rfm``, ``products``, ``purchases``, ``catalogue``, ``baskets``: each ``.parquet`` or ``.csv``,
    the rows of ``clvx sql <name>``): the summary and categories, and with ``cross_sell`` what cross-sell reads."""
    listener = listener or Silent()
    folder = Path(str(source.input))
    files = {name: _aggregate_file(folder, name) for name in AGGREGATE_FILES}
    need = ("rfm", "purchases", "catalogue") if cross_sell else ("rfm",)
    missing = [name for name in need if files[name] is None]
    if missing:
        what = "cross-sell reads" if cross_sell else "segments read"
        raise InputError(f"{folder}: a folder of aggregates needs {', '.join(f'{m}.parquet' for m in missing)} ({what} "
                         f"{', '.join(need)}; products and baskets are optional); write each with clvx sql <name> in your database")
    with listener.step("Reading the aggregates"):
        rfm_file = files["rfm"]
        assert rfm_file is not None
        summary = load_summary(rfm_file, source.columns.customer, options=source.read, exclude=source.exclude)
        products = files["products"]
        catalogue = _read_aggregate(files["catalogue"]) if files["catalogue"] is not None else None
        categories = customer_categories_of(_read_aggregate(products), catalogue) if products is not None else None
        cross = None
        if cross_sell:
            purchases_file, catalogue_file, baskets_file = files["purchases"], files["catalogue"], files["baskets"]
            assert purchases_file is not None and catalogue_file is not None
            purchases = _read_aggregate(purchases_file)
            days = to_int(purchases["holdout_days"].max(), null=0) if "holdout_days" in purchases.columns else 0
            cross = CrossSellAggregates(purchases, catalogue if catalogue is not None else _read_aggregate(catalogue_file),
                                        _read_aggregate(baskets_file) if baskets_file is not None else None, days)
    listener.summary_read(str(rfm_file), summary.height, period)
    if products is None:
        listener.notice(Notice("info", f"{folder} has no products aggregate, so the segments use no categories; "
                                       "add products.parquet (clvx sql products) for the segments of the log"))
    if cross_sell and files["baskets"] is None:
        listener.notice(Notice("info", f"{folder} has no baskets aggregate, so no offer is timed at checkout, none is a bundle "
                                       "and there are no bundles; add baskets.parquet (clvx sql baskets) for the offers of the log"))
    return Aggregates(summary, categories, cross, str(folder), period)


def database_aggregates(source: Source, offers: CrossSellOptions = CrossSellOptions(), *, period: Period = Period.day,
                        listener: Listener | None = None) -> Aggregates:
    """The RFM summary, customers' categories and cross-sell's aggregates, each computed in ``source``'s database."""
    listener = _Recording(listener or Silent())
    db = source.database
    if db is None:
        raise InputError(f"{source.label} is not a database; give a postgresql:// or duckdb:/// INPUT")
    data = summarize(source, period, listener)
    keep = source.read.keep_placeholder_ids
    with listener.step("Counting customers' categories in the database"):
        categories = categories_from_database(db, source.columns, as_of=source.as_of, keep_placeholder_ids=keep)
    days = holdout_days(offers.offer_horizon.days)
    with listener.step("Computing cross-sell's aggregates in the database"):
        purchases, catalogue, baskets = crosssell_from_database(db, source.columns, as_of=source.as_of, holdout_days=days,
                                                                keep_placeholder_ids=keep)
    return Aggregates(data.summary, categories, CrossSellAggregates(purchases, catalogue, baskets, days), db.label, period)


def _read_table(path: Path, problem: str) -> pl.DataFrame:
    """A small table of ids by its suffix (Parquet, JSON, else CSV), every CSV cell as text; ``problem`` has a {} for the reason."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(path)
        if suffix == ".json":
            return pl.read_json(path)
        return pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise InputError(problem.format(str(exc).splitlines()[0])) from None


def read_customer_ids(path: str | Path, tx: Transactions | None = None) -> pl.Series:
    """Customer ids from a file (CSV, Parquet or JSON): its ``customer_id`` column, the log's customer column, or its only column.

    Ids are read as text, exactly as written (``00042`` stays ``00042``), as the log's are.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{option('exclude_customers', str(path))}: file not found")
    frame = _read_table(path, f"{option('exclude_customers', str(path))} cannot be read as a table of customer ids ({{}})")
    original = tx.columns.customer if tx is not None else None
    names = [c for c in ("customer_id", original) if c and c in frame.columns]
    if not names and frame.width == 1:
        names = frame.columns
    if not names:
        raise InputError(f"{option('exclude_customers', str(path))} has no customer_id column (columns: {', '.join(frame.columns[:8])}); "
                         "name the column customer_id, or give a file with one column")
    return frame[names[0]].cast(pl.String).str.strip_chars().drop_nulls().unique()


def _bounded_rules(run: CrossSellRun | BasketRun, bounds: RuleBounds, listener: _Recording) -> pl.DataFrame:
    """The rules ``bounds`` keep, with a notice of how many they dropped and which options keep more."""
    with listener.step("Writing association rules"):
        kept = crosssell_rules(run, bounds)
    if kept.n_dropped:
        listener.notice(Notice("info", (
            f"Kept {kept.rules.height:,} of {kept.n_candidates:,} association rules (support >= {bounds.min_support:.2%}, "
            f"lift >= {bounds.min_lift:g}, the {bounds.per_product} most confident per product); {kept.n_dropped:,} dropped: "
            f"change {option('min_support')}, {option('min_lift')} or {option('rules_per_product')} to keep more")))
    return kept.rules


def _bundles(run: CrossSellRun | BasketRun, min_support: float, top: int, listener: _Recording) -> pl.DataFrame:
    """The ``top`` bundles bought in at least ``min_support`` of orders, with a notice when more were found."""
    with listener.step("Finding bundles bought in one order"):
        found = crosssell_bundles(run, min_support=min_support, top=top)
    if found.n_candidates > found.bundles.height:
        listener.notice(Notice("info", (
            f"Kept the top {found.bundles.height:,} of {found.n_candidates:,} bundles bought in at least "
            f"{min_support:.2%} of orders; change {option('bundle_min_support')} or {option('top_bundles')} to see more")))
    return found.bundles


def rules(source: Source, options: RulesOptions = RulesOptions(), listener: Listener | None = None) -> RulesResult:
    """Association rules (and bundles) of a log, as cross-sell writes them, without segments, models or offers.

    The same log and bounds give the same rules, byte for byte, as :func:`cross_sell` with
    ``rules``: the ownership (every customer of the log, the non-excluded products) and
    the pair counts are those the cross-sell builds, and nothing else is computed.
    """
    listener = _Recording(listener or Silent())
    tx = load(source, listener, need=("product",))
    run = run_baskets(tx, exclude_products=options.exclude_products, min_support=options.bounds.min_support, step=listener.step)
    found = _bounded_rules(run, options.bounds, listener)
    bundles = _bundles(run, options.bundle_min_support, options.top_bundles, listener) if options.bundles else None
    return RulesResult(run, found, tx, listener.tuple(), bundles=bundles)


def _without_opt_outs(frame: pl.DataFrame, opted_out: pl.Series, what: str, listener: Listener) -> pl.DataFrame:
    kept = frame.filter(~pl.col("customer_id").is_in(opted_out.implode()))
    n_customers = frame.filter(pl.col("customer_id").is_in(opted_out.implode()))["customer_id"].n_unique()
    listener.notice(Notice("info", (
        f"Opt-outs: {n_customers:,} customers of {option('exclude_customers')} ({opted_out.len():,} ids) left out of the {what} "
        f"({frame.height - kept.height:,} rows).")))
    return kept


def _opted_out_count(assignments: pl.DataFrame, opted_out: pl.Series | None) -> int:
    if opted_out is None:
        return 0
    return assignments.filter(pl.col("customer_id").is_in(opted_out.implode())).height


@dataclass(frozen=True)
class MeasureResult:
    measurement: CampaignMeasurement
    start: dt.date
    end: dt.date
    transactions: Transactions
    notices: tuple[Notice, ...]


def read_targets(path: str | Path) -> pl.DataFrame:
    """A targets file written by ``cross-sell --targets`` (CSV, Parquet or JSON), ids as text."""
    path = Path(path)
    frame = _read_table(path, f"TARGETS {path} cannot be read ({{}}); give the file cross-sell --targets wrote")
    missing = [c for c in ("customer_id", "product_id", "group") if c not in frame.columns]
    if missing:
        hint = f"write it with {option('control', 0.1)}" if missing == ["group"] else "give the file cross-sell --targets wrote"
        raise InputError(f"TARGETS {path} has no {', '.join(missing)} column; {hint}")
    cols = [c for c in ("customer_id", "product_id", "group", "segment") if c in frame.columns]
    # A CSV written for spreadsheets starts text cells such as '=1 with a quote: read them back as written.
    return frame.select(pl.col(c).cast(pl.String).str.strip_chars().str.replace(r"^'([=+\-@])", "$1") for c in cols)


@dataclass(frozen=True)
class CampaignReport:
    """A measured campaign for the report: the comparison and its window."""

    measurement: CampaignMeasurement
    start: dt.date
    end: dt.date


@dataclass(frozen=True, kw_only=True)
class CampaignOptions:
    """A campaign to measure: the targets file written with a control group, the window, the economics."""

    targets: str | Path
    start: dt.date
    end: dt.date | None = None
    cost_per_contact: float = 0.0
    margin: float = 1.0
    seed: int = 42


def _measure_on(tx: Transactions, offers: pl.DataFrame, campaign: CampaignOptions, listener: Listener) -> tuple[CampaignMeasurement, dt.date]:
    start = campaign.start
    end = campaign.end or tx.as_of
    if end < start:
        raise InputError(f"{option('end', end)} is before {option('start', start)}; the campaign window must run forward")
    first = tx.quality.first_date.date() if tx.quality.first_date else None
    if start > tx.as_of or (first is not None and end < first):
        raise InputError(f"the window {start} to {end} holds no purchase of the log ({first} to {tx.as_of}); check {option('start')}")
    lo = dt.datetime.combine(start, dt.time())
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time())
    window = collect(tx.frame.filter((pl.col("date") >= lo) & (pl.col("date") < hi) & pl.col("product_id").is_not_null())
                     .select("customer_id", "product_id", "amount"))
    with listener.step("Comparing treatment and control"):
        result = measure_campaign(offers, window, cost_per_contact=campaign.cost_per_contact, margin=campaign.margin, seed=campaign.seed)
    if campaign.cost_per_contact == 0:
        listener.notice(Notice("info", f"No contact cost given, so ROI is not computed; give {option('cost_per_contact')}"))
    return result, end


def measure(
    targets: str | Path,
    source: Source,
    *,
    start: dt.date,
    end: dt.date | None = None,
    cost_per_contact: float = 0.0,
    margin: float = 1.0,
    seed: int = 42,
    n_bootstrap: int = 2_000,
    listener: Listener | None = None,
) -> MeasureResult:
    """Treatment against control after a campaign: conversion, revenue per customer, incremental revenue (95% interval), ROI."""
    listener = _Recording(listener or Silent())
    offers = read_targets(targets)
    tx = load(source, listener, need=("product",))
    campaign = CampaignOptions(targets=targets, start=start, end=end, cost_per_contact=cost_per_contact, margin=margin, seed=seed)
    result, end = _measure_on(tx, offers, campaign, listener)
    return MeasureResult(result, start, end, tx, listener.tuple())


def report(
    source: Source,
    *,
    title: str = "Customer value report",
    calibration_end: dt.date | None = None,
    exclude_products: str | None = None,
    model: ModelOptions = ModelOptions(),
    clv: CLVOptions = CLVOptions(),
    segments: SegmentOptions = SegmentOptions(),
    campaign: CampaignOptions | None = None,
    exclude_customers: str | Path | None = None,
    listener: Listener | None = None,
) -> ReportResult:
    """Everything a report shows: segments, CLV, cross-sell when products are known, backtests on request.

    With ``campaign``, also a section comparing its treatment and control groups. With
    ``exclude_customers`` (opt-outs), the customer list leaves those customers out; they
    still count in the totals and the segments.
    """
    listener = _Recording(listener or Silent())
    if source.database is not None or is_aggregates_folder(source):
        return _report_from_aggregates(source, title=title, calibration_end=calibration_end, exclude_products=exclude_products,
                                       model=model, clv=clv, segments=segments, campaign=campaign,
                                       exclude_customers=exclude_customers, listener=listener)
    offers = read_targets(campaign.targets) if campaign is not None else None
    tx = load(source, listener, need=("product",) if campaign is not None else ())
    if calibration_end is not None:
        _check_calibration_end(calibration_end, tx)
    name, choice = resolve_model(model, listener, tx)
    data = build_report(
        tx, title=title, calibration_end=calibration_end, exclude_products=exclude_products, clvx_version=__version__,
        step=listener.step, period=model.unit, method=segments.method, k=segments.k, seed=segments.seed,
        penalizer=model.penalizer, engine=model.engine, discount_rate=clv.discount_rate, horizon=clv.horizon, model=name,
    )
    listener.extend(data_notices(data.customers, history_days=_log_days(tx)))
    listener.extend(fit_notices(data.segments.purchase_model, data.segments.gamma_gamma))
    if campaign is not None and offers is not None:
        measured, end = _measure_on(tx, offers, campaign, listener)
        data = replace(data, campaign=CampaignReport(measured, campaign.start, end))
    if exclude_customers is not None:
        opted_out = read_customer_ids(exclude_customers, tx)
        n = _opted_out_count(data.customers, opted_out)
        listener.notice(Notice("info", (
            f"Opt-outs: {n:,} customers of {option('exclude_customers')} ({opted_out.len():,} ids) left out of the report's "
            "customer list (they still count in the totals and segments).")))
        data = replace(data, opted_out=opted_out)
    return ReportResult(data, tx, listener.tuple(), choice)


def _report_from_aggregates(source: Source, *, title: str, calibration_end: dt.date | None, exclude_products: str | None,
                            model: ModelOptions, clv: CLVOptions, segments: SegmentOptions, campaign: CampaignOptions | None,
                            exclude_customers: str | Path | None, listener: _Recording) -> ReportResult:
    """The report of a database or a folder of aggregates: segments, CLV and cross-sell, from aggregates only."""
    if calibration_end is not None or campaign is not None:
        what = option("calibration_end") if calibration_end is not None else option("campaign")
        raise InputError(f"{source.label}: {what} holds back or windows the order lines, which the aggregates no longer have; "
                         "drop it for the report of the aggregates, or give the log's file")
    if source.database is not None:
        found = database_aggregates(source, period=model.unit, listener=listener)
    else:
        found = folder_aggregates(source, period=model.unit, listener=listener)
    assert found.cross_sell is not None
    name, choice = resolve_model(model, listener, None, found.summary)
    data = report_from_aggregates(
        found.cross_sell, title=title, source=found.label.rsplit("/", 1)[-1] if source.database is None else found.label,
        summary=found.summary, categories=found.categories, exclude_products=exclude_products, clvx_version=__version__,
        step=listener.step, period=model.unit, method=segments.method, k=segments.k, seed=segments.seed,
        penalizer=model.penalizer, engine=model.engine, discount_rate=clv.discount_rate, horizon=clv.horizon, model=name,
    )
    listener.extend(data_notices(data.customers, history_days=to_float(found.summary["T"].max(), null=0.0) * model.unit.days))
    listener.extend(fit_notices(data.segments.purchase_model, data.segments.gamma_gamma))
    if exclude_customers is not None:
        opted_out = read_customer_ids(exclude_customers)
        listener.notice(Notice("info", (
            f"Opt-outs: {_opted_out_count(data.customers, opted_out):,} customers of {option('exclude_customers')} "
            f"({opted_out.len():,} ids) left out of the report's customer list (they still count in the totals and segments).")))
        data = replace(data, opted_out=opted_out)
    return ReportResult(data, None, listener.tuple(), choice)


def sql(
    aggregate: Aggregate | str,
    *,
    dialect: Dialect | str = Dialect.duckdb,
    columns: ColumnMapping = ColumnMapping(),
    table: str | None = None,
    query: str | None = None,
    as_of: dt.date | None = None,
    period: Period = Period.day,
    keep_placeholder_ids: bool = False,
    offer_horizon: Horizon = CROSS_SELL_HORIZON,
) -> str:
    """The SQL that computes one of clvx's aggregates (``rfm``, ``histories``, ``products``; cross-sell's ``purchases``,
    ``catalogue``, ``baskets``, the first split at ``offer_horizon``) in ``dialect``.

    One definition (clv/sql.py) translated by sqlglot; on the bundled sample it gives
    exactly ``clvx.rfm``'s summary on DuckDB, PostgreSQL and Spark.
    """
    from clv.sql import aggregate_sql  # sqlglot: loaded only to write SQL

    return aggregate_sql(Aggregate(aggregate), Dialect(dialect), columns=columns, table=table, query=query, as_of=as_of,
                         period=period, keep_placeholder_ids=keep_placeholder_ids,
                         holdout_days=holdout_days(offer_horizon.days), pretty=True)


def sample(*, customers: int = 5_000, seed: int = 42, listener: Listener | None = None) -> Sample:
    """A synthetic transaction log with known BG/NBD, Gamma-Gamma and product structure."""
    listener = listener or Silent()
    with listener.step(f"Simulating {customers:,} customers"):
        return generate(SampleSpec(n_customers=customers, seed=seed))
