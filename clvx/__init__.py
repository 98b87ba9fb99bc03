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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import polars as pl

from clv import __version__
from clv import threads as _pools
from clv.backtest import HoldoutBacktest, holdout_backtest
from clv.errors import ClvxError, InputError, ModelError, option, readable
from clv.load import ColumnMapping, ReadOptions, Transactions, is_summary, load_summary, load_transactions, read_json
from clv.models import (
    BGNBD,
    CORRELATION_WARNING,
    LOW_DROPOUT,
    BGNBDParams,
    GammaGamma,
    GammaGammaParams,
    Horizon,
    data_warnings,
    model_document,
    models_from_document,
    score_customers,
)
from clv.rfm import Period, ScoreBins, collect, rfm_summary, score_rfm
from clv.sample import Sample, SampleSpec, bundled_sample_path, generate
from clv.scalars import to_float
from segments.crosssell import CrossSellBacktest
from segments.pipeline import (
    CROSS_SELL_HORIZON,
    CrossSellRun,
    ReportData,
    SegmentRun,
    build_report,
    crosssell_backtest,
    crosssell_rules,
    crosssell_targets,
    run_crosssell,
    run_segmentation,
)

__all__ = [
    "CLVOptions",
    "ClvxError",
    "ColumnMapping",
    "CrossSellOptions",
    "CrossSellResult",
    "FitResult",
    "Horizon",
    "InputError",
    "Listener",
    "ModelError",
    "ModelOptions",
    "Notice",
    "Period",
    "PredictResult",
    "RFMResult",
    "ReadOptions",
    "ReportData",
    "SegmentOptions",
    "SegmentResult",
    "Source",
    "ValidateResult",
    "__version__",
    "cross_sell",
    "fit",
    "load",
    "predict",
    "report",
    "rfm",
    "sample",
    "segment",
    "threads",
    "validate",
]

DEFAULT_CLV_HORIZON = "12m"
DEFAULT_DISCOUNT_RATE = 0.10


# --------------------------------------------------------------------------- options


@dataclass(frozen=True, kw_only=True)
class Source:
    """Where the transaction log (or an RFM summary) is and how to read it.

    ``input`` is a CSV or Parquet file, a glob of them, or a list of paths; ``None``
    reads the bundled sample. ``as_of`` ends the observation (later rows are excluded).
    ``read`` says how to decode odd files (encoding, decimal comma, time zone) and which
    odd rows to keep; ``exclude`` lists files a glob must not match.
    """

    input: str | Path | Sequence[str | Path] | None = None
    columns: ColumnMapping = field(default_factory=ColumnMapping)
    as_of: dt.date | None = None
    read: ReadOptions = field(default_factory=ReadOptions)
    exclude: tuple[str | Path, ...] = ()  # files a glob INPUT must not read (the run's own outputs)

    @property
    def label(self) -> str:
        if self.input is None:
            return str(bundled_sample_path())
        if isinstance(self.input, (str, Path)):
            return str(self.input)
        return ", ".join(map(str, self.input))

    def location(self) -> str | Path | Sequence[str | Path]:
        return bundled_sample_path() if self.input is None else self.input


@dataclass(frozen=True, kw_only=True)
class ModelOptions:
    """How BG/NBD and Gamma-Gamma are fitted: the time unit, an L2 penalty, the engine."""

    period: Period | None = None  # None: day, or a saved model's period
    penalizer: float = 0.0
    engine: Literal["auto", "lifetimes", "numpy"] = "auto"

    @property
    def unit(self) -> Period:
        """The period to fit in: the one given, else day."""
        return self.period or Period.day


@dataclass(frozen=True, kw_only=True)
class CLVOptions:
    """The CLV horizon and the annual discount rate, the same for every command that computes CLV."""

    horizon: Horizon = field(default_factory=lambda: Horizon.parse(DEFAULT_CLV_HORIZON))
    discount_rate: float = DEFAULT_DISCOUNT_RATE


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
    exclude_products: str | None = None
    offer_horizon: Horizon = CROSS_SELL_HORIZON
    targets: bool = False
    rules: bool = False


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
    transactions: Transactions
    notices: tuple[Notice, ...]


@dataclass(frozen=True)
class Summarized:
    """An RFM summary: computed from a transaction log, or read from a summary file."""

    summary: pl.DataFrame
    period: Period
    transactions: Transactions | None


@dataclass(frozen=True)
class FitResult:
    bgnbd: BGNBDParams
    gamma_gamma: GammaGammaParams
    period: Period
    data: Summarized
    notices: tuple[Notice, ...]

    def document(self) -> dict:
        """The fitted models as a JSON-ready document (what ``clvx fit --save`` writes)."""
        return model_document(self.bgnbd, self.gamma_gamma, period=self.period.value, clvx_version=__version__)


@dataclass(frozen=True)
class PredictResult:
    scores: pl.DataFrame  # the RFM summary plus p_alive, expected purchases and spend, clv
    bgnbd: BGNBDParams
    gamma_gamma: GammaGammaParams
    period: Period
    clv: CLVOptions
    data: Summarized
    notices: tuple[Notice, ...]


@dataclass(frozen=True)
class ValidateResult:
    backtest: HoldoutBacktest
    cross_sell: CrossSellBacktest | None
    transactions: Transactions
    notices: tuple[Notice, ...]


@dataclass(frozen=True)
class SegmentResult:
    run: SegmentRun
    transactions: Transactions
    notices: tuple[Notice, ...]


@dataclass(frozen=True)
class CrossSellResult:
    run: CrossSellRun
    targets: pl.DataFrame | None
    rules: pl.DataFrame | None
    transactions: Transactions
    notices: tuple[Notice, ...]


@dataclass(frozen=True)
class ReportResult:
    data: ReportData
    transactions: Transactions
    notices: tuple[Notice, ...]


# --------------------------------------------------------------------------- shared steps


def load(source: Source, listener: Listener | None = None, *, need: Sequence[str] = ()) -> Transactions:
    """Read and validate the transaction log; ``need`` names roles the analysis requires (e.g. ``product``)."""
    listener = listener or Silent()
    if source.input is None:
        listener.notice(Notice("info", f"No INPUT given: using the bundled sample ({source.label})."))
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
    location = source.location()
    if isinstance(location, (str, Path)) and source.input is not None and is_summary(location, source.read, exclude=source.exclude):
        with listener.step("Reading the RFM summary"):
            summary = load_summary(location, source.columns.customer, options=source.read, exclude=source.exclude)
        listener.summary_read(str(location), summary.height, period)
        return Summarized(summary, period, None)
    tx = load(source, listener)
    with listener.step("Computing RFM"):
        summary = collect(rfm_summary(tx.frame, tx.as_of, period))
    return Summarized(summary, period, tx)


def fit_notices(bgnbd: BGNBDParams, gamma_gamma: GammaGammaParams) -> list[Notice]:
    """What a user should know about a fit before trusting its forecast."""
    out = []
    dropout = bgnbd.a / (bgnbd.a + bgnbd.b)
    if dropout < LOW_DROPOUT:
        out.append(Notice("warning", (
            f"BG/NBD finds almost no dropout (mean dropout chance per purchase a/(a+b) = {dropout:.4f}), "
            "so P(alive) is near 1 for nearly everyone; the log may be too short to see customers leave")))
    if gamma_gamma.n_excluded:
        out.append(Notice("info", (
            f"Gamma-Gamma: {gamma_gamma.n_excluded:,} repeat customers with zero or negative spend were left out of the fit.")))
    if gamma_gamma.note:
        out.append(Notice("warning", gamma_gamma.note))
    for model, params in (("BG/NBD", bgnbd), ("Gamma-Gamma", gamma_gamma)):
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


def _fit_models(summary: pl.DataFrame, model: ModelOptions, listener: Listener) -> tuple[BGNBDParams, GammaGammaParams]:
    with listener.step("Fitting BG/NBD"):
        bg = BGNBD(penalizer=model.penalizer, engine=model.engine).fit(summary).params_
    with listener.step("Fitting Gamma-Gamma"):
        gg = GammaGamma(penalizer=model.penalizer, engine=model.engine).fit(summary).params_
    return bg, gg


# --------------------------------------------------------------------------- analyses


def rfm(source: Source, *, period: Period = Period.day, scores: bool = True, listener: Listener | None = None) -> RFMResult:
    """Frequency, recency, T and monetary value per customer (lifetimes' conventions), with RFM scores."""
    listener = _Recording(listener or Silent())
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
    """Fit BG/NBD and Gamma-Gamma on a transaction log or an RFM summary."""
    listener = _Recording(listener or Silent())
    data = summarize(source, model.unit, listener)
    listener.extend(data_notices(data.summary, history_days=_history_days(data)))
    bg, gg = _fit_models(data.summary, model, listener)
    listener.extend(fit_notices(bg, gg))
    return FitResult(bg, gg, model.unit, data, listener.tuple())


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
    score the input instead of a new fit; its period is used.
    """
    listener = _Recording(listener or Silent())
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
        bg, gg = _fit_models(data.summary, model, listener)
        listener.extend(fit_notices(bg, gg))
    with listener.step("Scoring customers"):
        scores = score_customers(data.summary, bg, gg, period_days=period.days, horizon=clv.horizon,
                                 annual_discount_rate=clv.discount_rate)
    return PredictResult(scores, bg, gg, period, clv, data, listener.tuple())


def validate(
    source: Source,
    *,
    calibration_end: dt.date,
    model: ModelOptions = ModelOptions(),
    cross_sell: bool = True,
    exclude_products: str | None = None,
    seed: int = 42,
    listener: Listener | None = None,
) -> ValidateResult:
    """Fit on the log up to ``calibration_end``, forecast the rest, compare with naive baselines.

    With a product column and ``cross_sell``, also backtest the cross-sell ranking.
    """
    listener = _Recording(listener or Silent())
    tx = load(source, listener)
    _check_calibration_end(calibration_end, tx)
    with listener.step("Fitting on the calibration period and scoring the holdout"):
        result = holdout_backtest(tx.frame, calibration_end, tx.as_of, model.unit, penalizer=model.penalizer,
                                  engine=model.engine)
    cross = None
    if cross_sell and tx.has("product_id"):
        with listener.step("Backtesting cross-sell targets"):
            # Same calibration summary as the forecast backtest: reuse its fitted models.
            cross = crosssell_backtest(tx, calibration_end, exclude_products=exclude_products, seed=seed,
                                       period=model.unit, models=(result.bgnbd, result.gamma_gamma))
    return ValidateResult(result, cross, tx, listener.tuple())


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
    listener: Listener | None = None,
) -> SegmentResult:
    """Customer segments a marketer can name, profiled by size, revenue, CLV and churn risk."""
    listener = _Recording(listener or Silent())
    tx = load(source, listener)
    run = run_segmentation(
        tx, period=model.unit, method=segments.method, k=segments.k, seed=segments.seed, penalizer=model.penalizer,
        engine=model.engine, discount_rate=clv.discount_rate, horizon=clv.horizon, step=listener.step,
    )
    listener.extend(data_notices(run.segmentation.assignments, history_days=_log_days(tx)))
    listener.extend(fit_notices(run.bgnbd, run.gamma_gamma))
    return SegmentResult(run, tx, listener.tuple())


def cross_sell(
    source: Source,
    *,
    model: ModelOptions = ModelOptions(),
    clv: CLVOptions = CLVOptions(),
    segments: SegmentOptions = SegmentOptions(),
    offers: CrossSellOptions = CrossSellOptions(),
    listener: Listener | None = None,
) -> CrossSellResult:
    """Who should be offered which product: a ranking per segment, offers per customer, rules."""
    listener = _Recording(listener or Silent())
    tx = load(source, listener, need=("product",))
    run = run_crosssell(
        tx, exclude_products=offers.exclude_products, offer_horizon=offers.offer_horizon, top=offers.top, period=model.unit,
        method=segments.method, k=segments.k, seed=segments.seed, penalizer=model.penalizer, engine=model.engine,
        discount_rate=clv.discount_rate, horizon=clv.horizon, step=listener.step,
    )
    listener.extend(data_notices(run.segments.segmentation.assignments, history_days=_log_days(tx)))
    listener.extend(fit_notices(run.segments.bgnbd, run.segments.gamma_gamma))
    targets = rules = None
    if offers.targets:
        with listener.step("Scoring offers per customer"):
            targets = crosssell_targets(run, top_k=offers.top_k, max_offers=offers.max_offers,
                                        allow_substitutes=offers.allow_substitutes)
    if offers.rules:
        rules = crosssell_rules(run)
    return CrossSellResult(run, targets, rules, tx, listener.tuple())


def report(
    source: Source,
    *,
    title: str = "Customer value report",
    calibration_end: dt.date | None = None,
    exclude_products: str | None = None,
    model: ModelOptions = ModelOptions(),
    clv: CLVOptions = CLVOptions(),
    segments: SegmentOptions = SegmentOptions(),
    listener: Listener | None = None,
) -> ReportResult:
    """Everything a report shows: segments, CLV, cross-sell when products are known, backtests on request."""
    listener = _Recording(listener or Silent())
    tx = load(source, listener)
    if calibration_end is not None:
        _check_calibration_end(calibration_end, tx)
    data = build_report(
        tx, title=title, calibration_end=calibration_end, exclude_products=exclude_products, clvx_version=__version__,
        step=listener.step, period=model.unit, method=segments.method, k=segments.k, seed=segments.seed,
        penalizer=model.penalizer, engine=model.engine, discount_rate=clv.discount_rate, horizon=clv.horizon,
    )
    listener.extend(data_notices(data.customers, history_days=_log_days(tx)))
    listener.extend(fit_notices(data.segments.bgnbd, data.segments.gamma_gamma))
    return ReportResult(data, tx, listener.tuple())


def sample(*, customers: int = 5_000, seed: int = 42, listener: Listener | None = None) -> Sample:
    """A synthetic transaction log with known BG/NBD, Gamma-Gamma and product structure."""
    listener = listener or Silent()
    with listener.step(f"Simulating {customers:,} customers"):
        return generate(SampleSpec(n_customers=customers, seed=seed))
