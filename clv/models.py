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

from clv import _lifetimes
from clv.errors import InputError, ModelError, NotFittedError

DAYS_PER_YEAR = 365.25
DAYS_PER_MONTH = DAYS_PER_YEAR / 12
DAYS_PER_WEEK = 7.0
Z_95 = 1.959963984540054
MIN_CUSTOMERS = 10
MIN_REPEAT_CUSTOMERS = 10
STUCK_TOLERANCE = 1e-4
CORRELATION_WARNING = 0.3
SUMMARY_KEYS = ["frequency", "recency", "T"]

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
LIFETIMES_DEFAULT_START = 0.1


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
    return summary.group_by(keys).agg(pl.len().cast(pl.Float64).alias("weight")).sort(keys)


def _arrays(frame: pl.DataFrame, *cols: str) -> list[np.ndarray]:
    return [frame[c].cast(pl.Float64).to_numpy() for c in cols]


def _stuck(raw: _lifetimes.RawFit, start: tuple[float, ...] | None, scale: float, n_params: int) -> bool:
    """True when the optimiser returned its starting point (a silent failure)."""
    start_log = np.full(n_params, LIFETIMES_DEFAULT_START) if start is None else np.asarray(start)
    fitted = np.log(np.asarray(raw.params, dtype=float))
    if n_params == 4:  # alpha is reported unscaled
        fitted[1] = math.log(raw.params[1] * scale)
    return bool(np.all(np.abs(fitted - start_log) < STUCK_TOLERANCE))


def _usable(raw: _lifetimes.RawFit) -> bool:
    values = np.asarray(raw.params, dtype=float)
    return raw.converged and bool(np.all(np.isfinite(values))) and bool(np.all(values > 0))


# --------------------------------------------------------------------------- estimators


class BGNBD:
    """BG/NBD estimator: ``BGNBD().fit(summary).params_``.

    ``summary`` has ``frequency, recency, T`` in one period unit. ``penalizer`` is
    lifetimes' L2 penalty on the parameters (0 for the maximum-likelihood fit).
    """

    def __init__(self, penalizer: float = 0.0, tol: float = 1e-7) -> None:
        self.penalizer = penalizer
        self.tol = tol

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
        x, tx, T, w = _arrays(rows, "frequency", "recency", "T", "weight")
        scale = 1.0 / T.max()
        attempts = []
        for i, start in enumerate(BGNBD_STARTS, start=1):
            raw = _lifetimes.fit_bgnbd(x, tx, T, w, penalizer=self.penalizer, initial_log_params=None if start is None else np.asarray(start), tol=self.tol)
            if _usable(raw) and not _stuck(raw, start, scale, 4):
                self.params_ = BGNBDParams(
                    *raw.params,
                    log_likelihood=bgnbd_log_likelihood(raw.params, x, tx, T, w),
                    n_customers=n,
                    n_distinct=rows.height,
                    converged=True,
                    standard_errors=raw.standard_errors,  # type: ignore[arg-type]
                    penalizer=self.penalizer,
                    n_starts=i,
                )
                return self
            attempts.append(raw.message if not raw.converged else "stopped at its starting point")
        raise ModelError(
            f"BG/NBD did not converge from {len(BGNBD_STARTS)} starting points ({attempts[0]}); "
            "try a small --penalizer such as 0.001, a coarser --period, or more data"
        )

    def _fitted(self) -> BGNBDParams:
        if not hasattr(self, "params_"):
            raise NotFittedError("this BGNBD model is not fitted yet; call fit() first")
        return self.params_


class GammaGamma:
    """Gamma-Gamma spend estimator, fitted on repeat customers with positive spend."""

    def __init__(self, penalizer: float = 0.0, tol: float = 1e-7) -> None:
        self.penalizer = penalizer
        self.tol = tol

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
        x, m, w = _arrays(rows, "frequency", "monetary_value", "weight")
        corr = float(np.corrcoef(used["frequency"].cast(pl.Float64).to_numpy(), used["monetary_value"].to_numpy())[0, 1]) if used.height > 2 else float("nan")
        attempts = []
        for i, start in enumerate(GAMMA_GAMMA_STARTS, start=1):
            raw = _lifetimes.fit_gamma_gamma(x, m, w, penalizer=self.penalizer, initial_log_params=None if start is None else np.asarray(start), tol=self.tol)
            if _usable(raw) and not _stuck(raw, start, 1.0, 3) and raw.params[1] > 1:
                self.params_ = GammaGammaParams(
                    *raw.params,
                    log_likelihood=gamma_gamma_log_likelihood(raw.params, x, m, w),
                    n_customers=used.height,
                    n_excluded=n_excluded,
                    converged=True,
                    standard_errors=raw.standard_errors,  # type: ignore[arg-type]
                    frequency_spend_correlation=corr,
                    penalizer=self.penalizer,
                    n_starts=i,
                )
                return self
            if _usable(raw) and raw.params[1] <= 1:
                attempts.append(f"q = {raw.params[1]:.3g} <= 1 leaves mean spend undefined")
            else:
                attempts.append(raw.message if not raw.converged else "stopped at its starting point")
        raise ModelError(
            f"Gamma-Gamma did not converge from {len(GAMMA_GAMMA_STARTS)} starting points ({attempts[0]}); "
            "try a small --penalizer such as 0.001, or check for extreme spend values"
        )

    def _fitted(self) -> GammaGammaParams:
        if not hasattr(self, "params_"):
            raise NotFittedError("this GammaGamma model is not fitted yet; call fit() first")
        return self.params_


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
    step discounted at its own time.
    """
    d_month = (1.0 + annual_discount_rate) ** (1.0 / 12.0) - 1.0
    total = np.zeros_like(np.asarray(frequency, dtype=float))
    previous = np.zeros_like(total)
    for t_days in cash_flow_days(horizon_days, days_per_month):
        cumulative = _lifetimes.bgnbd_expected_purchases(bgnbd.params, t_days / period_days, frequency, recency, T)
        total += (cumulative - previous) / (1.0 + d_month) ** (t_days / days_per_month)
        previous = cumulative
    return total


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

    * ``p_alive``: P(alive | x, t_x, T), FHL 2005 eq. (in Fader, Hardie & Lee's note 021);
    * ``expected_purchases``: E[X(horizon) | x, t_x, T], FHL 2005 eq. 10;
    * ``expected_avg_value``: E[M | x, m_x] (note 025, eq. 5): the population mean for
      customers with no repeat purchase; repeat spend below 0 counts as 0;
    * ``clv``: ``expected_avg_value`` x discounted expected purchases (see
      :func:`discounted_expected_purchases`).

    The BG/NBD quantities depend only on (frequency, recency, T), so they are
    computed once per distinct triple and joined back.
    """
    if gamma_gamma.q <= 1:
        raise ModelError(f"Gamma-Gamma q = {gamma_gamma.q:.3g} <= 1: mean spend is undefined")
    triples = summary.select(SUMMARY_KEYS).unique().sort(SUMMARY_KEYS)
    x, tx, T = _arrays(triples, *SUMMARY_KEYS)
    p_alive = _lifetimes.bgnbd_p_alive(bgnbd.params, x, tx, T)
    expected = _lifetimes.bgnbd_expected_purchases(bgnbd.params, horizon.periods(period_days), x, tx, T)
    discounted = discounted_expected_purchases(
        bgnbd, x, tx, T, horizon_days=horizon.days, annual_discount_rate=annual_discount_rate, period_days=period_days
    )
    scored = triples.with_columns(
        pl.Series("p_alive", p_alive), pl.Series("expected_purchases", expected), pl.Series("_discounted", discounted)
    )
    _check_finite(scored, ["p_alive", "expected_purchases", "_discounted"])
    out = summary.join(scored, on=SUMMARY_KEYS, how="left", maintain_order="left")
    freq, money = _arrays(out, "frequency", "monetary_value")
    avg = _lifetimes.gamma_gamma_expected_average(gamma_gamma.params, freq, np.maximum(money, 0.0))
    out = out.with_columns(pl.Series("expected_avg_value", avg)).with_columns(
        (pl.col("expected_avg_value") * pl.col("_discounted")).alias("clv")
    )
    _check_finite(out, ["expected_avg_value", "clv"])
    return out.drop("_discounted")


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
