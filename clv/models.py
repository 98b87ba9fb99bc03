"""BG/NBD purchases, Gamma-Gamma spend, and customer lifetime value over polars frames.

Estimators follow scikit-learn's contract: ``__init__`` stores settings, ``fit``
validates, learns and returns ``self``, learned state ends in ``_``. They fit on the
distinct (frequency, recency, T) rows with a weight per row, which is exact (the
likelihood is a weighted sum) and turns a million customers into a few thousand
rows. lifetimes does the numerical work through :mod:`clv._lifetimes`.

Time is in the summary's period (day, week or month); horizons are given in days.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
from scipy.special import betaln, gammaln

from clv import _lifetimes, likelihood
from clv.errors import InputError, ModelError, NotFittedError
from clv.likelihood import Optimum

DAYS_PER_YEAR = 365.25
DAYS_PER_MONTH = DAYS_PER_YEAR / 12
DAYS_PER_WEEK = 7.0
Z_95 = 1.959963984540054
MIN_CUSTOMERS = 10
MIN_REPEAT_CUSTOMERS = 10
STUCK_TOLERANCE = 1e-4
CORRELATION_WARNING = 0.3
LOW_DROPOUT = 0.01  # a / (a + b) below this: the fit sees (almost) no one leave
SUMMARY_KEYS = ["frequency", "recency", "T"]
ENGINES = ("auto", "lifetimes", "numpy")
# With "auto", lifetimes fits data up to this many distinct rows (well under a
# second); beyond it the numpy engine, which gives the same optimum to 1e-12.
LIFETIMES_MAX_ROWS = 20_000

# Deterministic starting points (logs of r, alpha, a, b with alpha on lifetimes'
# rescaled time where the largest T is 1). The first is lifetimes' own default.
BGNBD_STARTS: tuple[tuple[float, ...] | None, ...] = (
    None,
    (0.0, 0.0, 0.0, 0.0),
    (math.log(0.5), math.log(0.1), math.log(0.5), math.log(2.0)),
    (math.log(2.0), math.log(0.5), math.log(1.0), math.log(5.0)),
    (math.log(0.2), math.log(0.02), math.log(0.8), math.log(2.5)),
)
GAMMA_GAMMA_STARTS: tuple[tuple[float, ...] | None, ...] = (
    None,
    (math.log(2.0), math.log(2.0), 0.0),
    (math.log(5.0), math.log(3.0), math.log(10.0)),
    (math.log(1.0), math.log(1.5), math.log(0.5)),
)


@dataclass(frozen=True)
class BGNBDParams:
    """A fitted BG/NBD model (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way").

    ``r, alpha`` shape and scale the Gamma heterogeneity in purchase rates (alpha in
    periods), ``a, b`` the Beta heterogeneity in dropout probability.
    ``log_likelihood`` is the total over customers on the original time scale (eq. 6
    summed), comparable with the paper's -9,582.4 on CDNOW.
    """

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    n_customers: int
    n_distinct: int
    converged: bool
    standard_errors: tuple[float, float, float, float]
    penalizer: float = 0.0
    n_starts: int = 1
    engine: str = "lifetimes"

    NAMES = ("r", "alpha", "a", "b")

    @property
    def params(self) -> tuple[float, float, float, float]:
        return (self.r, self.alpha, self.a, self.b)

    def intervals(self) -> dict[str, tuple[float, float]]:
        """Wald 95% intervals, as lifetimes reports them."""
        return {n: (v - Z_95 * se, v + Z_95 * se) for n, v, se in zip(self.NAMES, self.params, self.standard_errors, strict=True)}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["standard_errors"] = dict(zip(self.NAMES, self.standard_errors, strict=True))
        return d


@dataclass(frozen=True)
class GammaGammaParams:
    """A fitted Gamma-Gamma spend model (Fader, Hardie & Lee 2005b; Hardie's note 025).

    A customer's mean spend per transaction has shape ``p`` and a Gamma(q, v)
    distributed rate; the population mean spend is ``p v / (q - 1)``.
    ``frequency_spend_correlation`` checks the model's assumption that spend and
    frequency are independent (it should be near 0).
    """

    p: float
    q: float
    v: float
    log_likelihood: float
    n_customers: int
    n_excluded: int
    converged: bool
    standard_errors: tuple[float, float, float]
    frequency_spend_correlation: float
    penalizer: float = 0.0
    n_starts: int = 1
    engine: str = "lifetimes"

    NAMES = ("p", "q", "v")

    @property
    def params(self) -> tuple[float, float, float]:
        return (self.p, self.q, self.v)

    @property
    def population_mean(self) -> float:
        """E[M] = p v / (q - 1) (Hardie's note 025, eq. 4)."""
        return self.p * self.v / (self.q - 1)

    def intervals(self) -> dict[str, tuple[float, float]]:
        return {n: (v - Z_95 * se, v + Z_95 * se) for n, v, se in zip(self.NAMES, self.params, self.standard_errors, strict=True)}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["standard_errors"] = dict(zip(self.NAMES, self.standard_errors, strict=True))
        d["population_mean"] = self.population_mean
        return d


# --------------------------------------------------------------------------- likelihoods


def bgnbd_log_likelihood(params: tuple[float, ...], frequency: np.ndarray, recency: np.ndarray, T: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Total BG/NBD log-likelihood, Fader, Hardie & Lee 2005, eq. 6 (log-sum-exp form of Hardie's note 004, sec. 7)."""
    r, alpha, a, b = params
    x = np.asarray(frequency, dtype=float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    a4 = np.where(x > 0, np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + recency), -np.inf)
    return float(np.sum(w * (a1 + a2 + np.logaddexp(a3, a4))))


def gamma_gamma_log_likelihood(params: tuple[float, ...], frequency: np.ndarray, monetary_value: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Total Gamma-Gamma log-likelihood of mean spends (Hardie's note 025, eq. 1a)."""
    p, q, v = params
    x = np.asarray(frequency, dtype=float)
    m = np.asarray(monetary_value, dtype=float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    ll = (
        gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(v)
        + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(x * m + v)
    )
    return float(np.sum(w * ll))


# --------------------------------------------------------------------------- helpers


def compress(summary: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Distinct rows of ``keys`` with a ``weight`` column counting customers, in sorted order."""
    return summary.lazy().group_by(keys).agg(pl.len().cast(pl.Float64).alias("weight")).sort(keys).collect(engine="streaming")


def float_columns(frame: pl.DataFrame, *cols: str) -> list[np.ndarray]:
    """Columns of ``frame`` as float64 numpy arrays, for the model functions."""
    return [frame[c].cast(pl.Float64).to_numpy() for c in cols]


def _stuck(fit: Optimum, start: tuple[float, ...] | None, n_params: int, scale: float) -> bool:
    """True when the optimiser returned its starting point (a silent failure)."""
    start_log = np.full(n_params, likelihood.LIFETIMES_DEFAULT_START) if start is None else np.asarray(start)
    fitted = np.log(np.asarray(fit.params, dtype=float))
    if n_params == 4:  # alpha is reported in input time, the start is on rescaled time
        fitted[1] = math.log(fit.params[1] * scale)
    return bool(np.all(np.abs(fitted - start_log) < STUCK_TOLERANCE))


def _usable(fit: Optimum) -> bool:
    values = np.asarray(fit.params, dtype=float)
    return fit.converged and bool(np.all(np.isfinite(values))) and bool(np.all(values > 0))


def _choose_engine(engine: str, n_rows: int) -> str:
    if engine not in ENGINES:
        raise InputError(f"engine '{engine}' is not one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "lifetimes" if n_rows <= LIFETIMES_MAX_ROWS else "numpy"
    return engine


def _fit_with_restarts(fit_once, starts, *, n_params: int, scale: float, valid=lambda fit: True) -> tuple[Optimum, int, list[str]]:
    """The first fit, over deterministic starting points, that converged, moved and is ``valid``.

    Returns the fit (or the last failure), the number of starts tried and why each failed.
    """
    problems: list[str] = []
    fit = None
    for i, start in enumerate(starts, start=1):
        fit = fit_once(None if start is None else np.asarray(start))
        if not _usable(fit):
            problems.append(fit.message or "did not converge")
        elif _stuck(fit, start, n_params, scale):
            problems.append("stopped at its starting point")
        elif not valid(fit):
            problems.append("invalid parameters")
        else:
            return fit, i, problems
    assert fit is not None
    return fit, len(starts), problems


# --------------------------------------------------------------------------- estimators


class _Estimator:
    """The estimators' shared settings; reading ``params_`` before ``fit`` says so, instead of a bare AttributeError."""

    def __init__(self, penalizer: float = 0.0, tol: float = 1e-7, engine: str = "auto", standard_errors: bool = True) -> None:
        self.penalizer = penalizer
        self.tol = tol
        self.engine = engine
        self.standard_errors = standard_errors

    def __getattr__(self, name: str):
        if name == "params_":
            raise NotFittedError(f"this {type(self).__name__} model is not fitted yet; call fit() first")
        raise AttributeError(name)


class BGNBD(_Estimator):
    """BG/NBD estimator: ``BGNBD().fit(summary).params_``.

    ``summary`` has ``frequency, recency, T`` in one period unit. ``penalizer`` is
    lifetimes' L2 penalty on the parameters (0 for the maximum-likelihood fit).
    ``engine`` is ``lifetimes``, ``numpy`` (same equations, vectorised; see
    :mod:`clv.likelihood`) or ``auto`` (lifetimes up to ``LIFETIMES_MAX_ROWS``
    distinct rows). Without ``standard_errors`` the numpy engine skips the Hessian
    (8 gradient evaluations) and reports NaN errors: for pipelines that only use the
    point estimates.
    """

    def fit(self, summary: pl.DataFrame) -> BGNBD:
        """Fit on the distinct (frequency, recency, T) rows, restarting from fixed points on failure."""
        n = summary.height
        if n < MIN_CUSTOMERS:
            raise ModelError(f"BG/NBD needs at least {MIN_CUSTOMERS} customers to fit; got {n}")
        if summary["frequency"].max() == 0:
            raise ModelError(
                "no customer made a repeat purchase, so BG/NBD cannot tell purchase rate from dropout; "
                "use a longer log or a finer --period"
            )
        if summary["T"].max() == 0:
            raise ModelError("every customer's first purchase is in the last period (T = 0 for all); the log needs more history")
        rows = compress(summary, SUMMARY_KEYS)
        x, tx, T, w = float_columns(rows, "frequency", "recency", "T", "weight")
        engine = _choose_engine(self.engine, rows.height)
        fitter = _lifetimes.fit_bgnbd if engine == "lifetimes" else likelihood.fit_bgnbd
        fit, n_starts, problems = _fit_with_restarts(
            lambda start: fitter(x, tx, T, w, penalizer=self.penalizer, initial_log_params=start, tol=self.tol,
                                 standard_errors=self.standard_errors),
            BGNBD_STARTS,
            n_params=4,
            scale=1.0 / T.max(),
        )
        if len(problems) == n_starts:
            raise ModelError(
                f"BG/NBD did not converge from {n_starts} starting points ({problems[0]}); "
                "try a small --penalizer such as 0.001, a coarser --period, or more data"
            )
        self.params_ = BGNBDParams(
            *fit.params,
            log_likelihood=bgnbd_log_likelihood(fit.params, x, tx, T, w),
            n_customers=n,
            n_distinct=rows.height,
            converged=True,
            standard_errors=fit.standard_errors,  # type: ignore[arg-type]
            penalizer=self.penalizer,
            n_starts=n_starts,
            engine=engine,
        )
        return self


class GammaGamma(_Estimator):
    """Gamma-Gamma spend estimator, fitted on repeat customers with positive spend.

    ``penalizer``, ``engine`` and ``standard_errors`` as for :class:`BGNBD`.
    """

    def fit(self, summary: pl.DataFrame) -> GammaGamma:
        """Fit on customers with ``frequency > 0``; those whose ``monetary_value <= 0`` are excluded and counted."""
        repeat = summary.filter(pl.col("frequency") > 0)
        used = repeat.filter(pl.col("monetary_value") > 0)
        n_excluded = repeat.height - used.height
        if used.height < MIN_REPEAT_CUSTOMERS:
            raise ModelError(
                f"Gamma-Gamma needs at least {MIN_REPEAT_CUSTOMERS} repeat customers with positive spend; "
                f"found {used.height} ({n_excluded} repeat customers have zero or negative spend)"
            )
        rows = compress(used, ["frequency", "monetary_value"])
        x, m, w = float_columns(rows, "frequency", "monetary_value", "weight")
        freq = used["frequency"].cast(pl.Float64).to_numpy()
        spend = used["monetary_value"].to_numpy()
        corr = float(np.corrcoef(freq, spend)[0, 1]) if np.std(freq) > 0 and np.std(spend) > 0 else float("nan")
        engine = _choose_engine(self.engine, rows.height)
        fitter = _lifetimes.fit_gamma_gamma if engine == "lifetimes" else likelihood.fit_gamma_gamma
        fit, n_starts, problems = _fit_with_restarts(
            lambda start: fitter(x, m, w, penalizer=self.penalizer, initial_log_params=start, tol=self.tol,
                                 standard_errors=self.standard_errors),
            GAMMA_GAMMA_STARTS,
            n_params=3,
            scale=1.0,
            valid=lambda f: f.params[1] > 1,  # q <= 1 leaves the mean spend undefined
        )
        if len(problems) == n_starts:
            raise ModelError(
                f"Gamma-Gamma did not converge from {n_starts} starting points ({problems[0]}); "
                "try a small --penalizer such as 0.001, or check for extreme spend values"
            )
        self.params_ = GammaGammaParams(
            *fit.params,
            log_likelihood=gamma_gamma_log_likelihood(fit.params, x, m, w),
            n_customers=used.height,
            n_excluded=n_excluded,
            converged=True,
            standard_errors=fit.standard_errors,  # type: ignore[arg-type]
            frequency_spend_correlation=corr,
            penalizer=self.penalizer,
            n_starts=n_starts,
            engine=engine,
        )
        return self


# --------------------------------------------------------------------------- value


@dataclass(frozen=True)
class Horizon:
    """A forecast horizon: ``12m``, ``39w``, ``90d`` or ``1y``."""

    days: float
    label: str

    UNITS = {"d": 1.0, "w": DAYS_PER_WEEK, "m": DAYS_PER_MONTH, "y": DAYS_PER_YEAR}

    @classmethod
    def parse(cls, text: str) -> Horizon:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dwmy])\s*", text.lower())
        if not match or float(match.group(1)) <= 0:
            raise InputError(f"horizon '{text}' is not a duration such as 12m, 39w, 90d or 1y")
        return cls(float(match.group(1)) * cls.UNITS[match.group(2)], text.strip())

    def periods(self, period_days: float) -> float:
        return self.days / period_days


def cash_flow_days(horizon_days: float, days_per_month: float = DAYS_PER_MONTH) -> np.ndarray:
    """Month ends within the horizon, plus the horizon itself when it falls mid-month."""
    n_months = int(math.floor(horizon_days / days_per_month + 1e-9))
    ends = [m * days_per_month for m in range(1, n_months + 1)]
    if horizon_days - (ends[-1] if ends else 0.0) > 1e-9:
        ends.append(horizon_days)
    return np.asarray(ends)


def discounted_expected_purchases(
    bgnbd: BGNBDParams,
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    *,
    horizon_days: float,
    annual_discount_rate: float,
    period_days: float,
    days_per_month: float = DAYS_PER_MONTH,
) -> np.ndarray:
    """sum_m (E[X(t_m)] - E[X(t_{m-1})]) / (1 + d_month)^m over month ends t_m in the horizon.

    The discrete monthly discounting of lifetimes' ``customer_lifetime_value`` with a
    calendar-exact month (365.25 / 12 days) and ``d_month = (1 + d_annual)^(1/12) - 1``;
    E[X(t)] is FHL 2005 eq. 10. A horizon that ends mid-month adds a last, partial
    step discounted at its own time. Since E[X(t)] = U(x, T, t) P(alive), the sum is
    taken over U once per distinct (x, T) and multiplied by P(alive).
    """
    discounted, _, pair_idx = _pair_value_terms(
        bgnbd, frequency, T, horizon_days=horizon_days, annual_discount_rate=annual_discount_rate,
        period_days=period_days, days_per_month=days_per_month,
    )
    return discounted[pair_idx] * likelihood.bgnbd_p_alive(bgnbd.params, frequency, recency, T)


def _pair_value_terms(
    bgnbd: BGNBDParams,
    frequency: np.ndarray,
    T: np.ndarray,
    *,
    horizon_days: float,
    annual_discount_rate: float,
    period_days: float,
    days_per_month: float = DAYS_PER_MONTH,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct (x, T): the discounted sum of U increments over the cash flows, U at the
    horizon (the last cash flow, so no extra evaluation), and each row's pair index."""
    pair_x, pair_T, pair_idx = _pairs(frequency, T)
    d_month = (1.0 + annual_discount_rate) ** (1.0 / 12.0) - 1.0
    total = np.zeros_like(pair_x)
    previous = np.zeros_like(pair_x)
    days = cash_flow_days(horizon_days, days_per_month)
    for t_days in days:
        cumulative = likelihood.bgnbd_unconditional_part(bgnbd.params, t_days / period_days, pair_x, pair_T)
        total += (cumulative - previous) / (1.0 + d_month) ** (t_days / days_per_month)
        previous = cumulative
    if days[-1] != horizon_days:  # a month end within rounding of the horizon: evaluate at the horizon itself
        previous = likelihood.bgnbd_unconditional_part(bgnbd.params, horizon_days / period_days, pair_x, pair_T)
    return total, previous, pair_idx


def _pairs(frequency: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (x, T) pairs and each row's index into them (one 1-D integer key, not a row-wise unique)."""
    x_vals, x_idx = np.unique(np.asarray(frequency, float), return_inverse=True)
    T_vals, T_idx = np.unique(np.asarray(T, float), return_inverse=True)
    key = x_idx.astype(np.int64) * len(T_vals) + T_idx
    keys, pair_idx = np.unique(key, return_inverse=True)
    return x_vals[keys // len(T_vals)], T_vals[keys % len(T_vals)], pair_idx


def expected_purchases(bgnbd: BGNBDParams, t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """E[X(t) | x, t_x, T] (FHL 2005 eq. 10), the hypergeometric part once per distinct (x, T)."""
    pair_x, pair_T, pair_idx = _pairs(frequency, T)
    unconditional = likelihood.bgnbd_unconditional_part(bgnbd.params, t, pair_x, pair_T)
    return unconditional[pair_idx] * likelihood.bgnbd_p_alive(bgnbd.params, frequency, recency, T)


def expected_average_value(gamma_gamma: GammaGammaParams, frequency: np.ndarray, monetary_value: np.ndarray) -> np.ndarray:
    """E[M | x, m_x] (note 025, eq. 5); repeat spend below 0 counts as 0."""
    return likelihood.gamma_gamma_expected_average(gamma_gamma.params, frequency, np.maximum(monetary_value, 0.0))


def score_customers(
    summary: pl.DataFrame,
    bgnbd: BGNBDParams,
    gamma_gamma: GammaGammaParams,
    *,
    period_days: float,
    horizon: Horizon,
    annual_discount_rate: float = 0.10,
) -> pl.DataFrame:
    """Add ``p_alive, expected_purchases, expected_avg_value, clv`` to an RFM summary.

    * ``p_alive``: P(alive | x, t_x, T) (Fader, Hardie & Lee, note 021, eq. 2);
    * ``expected_purchases``: E[X(horizon) | x, t_x, T], FHL 2005 eq. 10;
    * ``expected_avg_value``: E[M | x, m_x] (note 025, eq. 5): the population mean for
      customers with no repeat purchase; repeat spend below 0 counts as 0;
    * ``clv``: ``expected_avg_value`` x discounted expected purchases (see
      :func:`discounted_expected_purchases`).

    The hypergeometric part of E[X(t)] depends only on (frequency, T), so it is
    evaluated once per distinct pair; everything else is one array operation.
    """
    if gamma_gamma.q <= 1:
        raise ModelError(f"Gamma-Gamma q = {gamma_gamma.q:.3g} <= 1: mean spend is undefined")
    x, tx, T, money = float_columns(summary, *SUMMARY_KEYS, "monetary_value")
    p_alive = likelihood.bgnbd_p_alive(bgnbd.params, x, tx, T)
    discounted, at_horizon, pair_idx = _pair_value_terms(
        bgnbd, x, T, horizon_days=horizon.days, annual_discount_rate=annual_discount_rate, period_days=period_days
    )
    avg_value = expected_average_value(gamma_gamma, x, money)
    out = summary.with_columns(
        pl.Series("p_alive", p_alive),
        pl.Series("expected_purchases", at_horizon[pair_idx] * p_alive),
        pl.Series("expected_avg_value", avg_value),
        pl.Series("clv", avg_value * (discounted[pair_idx] * p_alive)),
    )
    _check_finite(out, ["p_alive", "expected_purchases", "expected_avg_value", "clv"])
    return out


def _check_finite(frame: pl.DataFrame, columns: list[str]) -> None:
    for col in columns:
        bad = frame.filter(~pl.col(col).is_finite() | pl.col(col).is_null())
        if bad.height:
            row = bad.row(0, named=True)
            raise ModelError(
                f"{col} is not finite for {bad.height:,} customers (first: frequency={row['frequency']}, "
                f"recency={row['recency']}, T={row['T']}); try a coarser --period or a small --penalizer"
            )


# --------------------------------------------------------------------------- saved models


def model_document(bgnbd: BGNBDParams, gamma_gamma: GammaGammaParams, *, period: str, clvx_version: str) -> dict:
    """The fitted models as a JSON-ready document (never a pickle)."""
    return {
        "format": "clvx-model",
        "format_version": 1,
        "period": period,
        "versions": {"clvx": clvx_version, "lifetimes": _lifetimes.lifetimes_version()},
        "bgnbd": bgnbd.to_dict(),
        "gamma_gamma": gamma_gamma.to_dict(),
    }


def models_from_document(doc: dict, source: str) -> tuple[str, BGNBDParams, GammaGammaParams]:
    """Rebuild fitted parameters from :func:`model_document`'s output, checking every field."""
    if not isinstance(doc, dict) or doc.get("format") != "clvx-model":
        raise InputError(f"{source} is not a clvx model file (save one with clvx fit --save)")
    try:
        bg = dict(doc["bgnbd"])
        gg = dict(doc["gamma_gamma"])
        bg["standard_errors"] = tuple(float(bg["standard_errors"][k]) for k in BGNBDParams.NAMES)
        gg["standard_errors"] = tuple(float(gg["standard_errors"][k]) for k in GammaGammaParams.NAMES)
        gg.pop("population_mean", None)
        bgp = BGNBDParams(**bg)
        ggp = GammaGammaParams(**gg)
        period = str(doc["period"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{source} is not a valid clvx model file: missing or malformed {exc}") from exc
    for name, value in [*zip(BGNBDParams.NAMES, bgp.params, strict=True), *zip(GammaGammaParams.NAMES, ggp.params, strict=True)]:
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise InputError(f"{source}: parameter {name} = {value!r} must be a positive number")
    return period, bgp, ggp
