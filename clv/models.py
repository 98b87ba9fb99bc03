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
import numbers
import re
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict, Unpack

import numpy as np
import polars as pl

from clv import _lifetimes, expectations, likelihood
from clv.errors import InputError, ModelError, NotFittedError, option
from clv.likelihood import Optimum
from clv.scalars import to_float
from clv.terms import (  # noqa: F401 - re-exported: the limits and units of the models
    DAYS_PER_MONTH,
    DAYS_PER_WEEK,
    DAYS_PER_YEAR,
    MAX_ANNUAL_DISCOUNT_RATE,
    MAX_HORIZON_YEARS,
    MAX_PENALIZER,
    MODEL_LABELS,
    Engine,
    PurchaseModel,
)

Z_95 = 1.959963984540054
MIN_CUSTOMERS = 10
# A fit that ends at an improper maximum (the Hessian there is not positive definite: a flat
# ridge, as when almost nobody leaves) is tried again with the other engine up to this many
# distinct rows, where lifetimes' BG/NBD and MBG/NBD fitters take well under a second: on the
# UCI retail log's ridge the two optimisers stop at different points, and lifetimes' is a proper
# maximum. A fit that does not converge at all tries the other engine at any size.
OTHER_ENGINE_MAX_ROWS = 20_000
MIN_REPEAT_CUSTOMERS = 10
STUCK_TOLERANCE = 1e-4
RIDGE_AGREEMENT = 1e-8  # relative log-likelihood gap under which stalled starts have found the same supremum
RIDGE_DISTINCT = 1e-6  # log-parameter spread above which stalled starts stopped at distinct points of it
CORRELATION_WARNING = 0.3
LOW_DROPOUT = 0.01  # a / (a + b) below this: the fit sees (almost) no one leave
RSE_POORLY_IDENTIFIED = 1.0  # standard error above the estimate itself: the data barely pins it down
# Gamma-Gamma needs spend that varies; below this coefficient of variation of repeat customers'
# mean spend its likelihood has no interior maximum (p or q run to infinity) and expected spend
# is the observed mean instead. Up to FLAT_SPEND_CV the same happens when the fit fails.
NEAR_CONSTANT_SPEND_CV = 0.02
FLAT_SPEND_CV = 0.25
# Gamma-Gamma's q beyond this: the prior on customers' mean spend has a coefficient of variation
# 1 / sqrt(q - 2) under 0.1%, i.e. the optimiser is running off along the ridge q, v -> infinity
# (every customer the same); where it stops there, and whether the Hessian looks definite, is noise.
GAMMA_GAMMA_Q_RIDGE = 1e6
# Klaviyo's documented minimum for its predictive CLV: fewer customers or a shorter history
# leave CLV and churn predictions unreliable.
MIN_RELIABLE_CUSTOMERS = 500
MIN_RELIABLE_HISTORY_DAYS = 180
SUMMARY_KEYS = ["frequency", "recency", "T"]
ENGINES = tuple(e.value for e in Engine)

# Deterministic starting points (logs of r, alpha, a, b with alpha on lifetimes'
# rescaled time where the largest T is 1). The first is lifetimes' own default.
BGNBD_STARTS: tuple[tuple[float, ...] | None, ...] = (
    None,
    (0.0, 0.0, 0.0, 0.0),
    (math.log(0.5), math.log(0.1), math.log(0.5), math.log(2.0)),
    (math.log(2.0), math.log(0.5), math.log(1.0), math.log(5.0)),
    (math.log(0.2), math.log(0.02), math.log(0.8), math.log(2.5)),
)
# Pareto/NBD: logs of (r, alpha, s, beta), alpha and beta on rescaled time. No None: lifetimes'
# own default start for Pareto/NBD is random.
PARETO_STARTS: tuple[tuple[float, ...] | None, ...] = (
    (0.0, 0.0, 0.0, 0.0),
    (math.log(0.5), math.log(0.1), math.log(0.5), math.log(0.1)),
    (math.log(1.0), math.log(0.5), math.log(1.0), math.log(1.0)),
    (math.log(0.2), math.log(0.02), math.log(0.5), math.log(0.05)),
    (math.log(2.0), math.log(0.2), math.log(2.0), math.log(0.5)),
)
GAMMA_GAMMA_STARTS: tuple[tuple[float, ...] | None, ...] = (
    None,
    (math.log(2.0), math.log(2.0), 0.0),
    (math.log(5.0), math.log(3.0), math.log(10.0)),
    (math.log(1.0), math.log(1.5), math.log(0.5)),
)


class _Fitted:
    """What both parameter results share: intervals and identification, from ``params`` and ``standard_errors``."""

    NAMES: tuple[str, ...] = ()
    if TYPE_CHECKING:  # provided by each result dataclass
        standard_errors: tuple[float, ...]

        @property
        def params(self) -> tuple[float, ...]: ...

    def intervals(self) -> dict[str, tuple[float, float]]:
        """95% intervals on the log scale (delta method: se(log theta) = se / theta), so never negative.

        ``(theta exp(-z se / theta), theta exp(z se / theta))``; NaN where there is no standard error.
        """
        out = {}
        for name, value, se in zip(self.NAMES, self.params, self.standard_errors, strict=True):
            half = Z_95 * se / value if value > 0 else float("nan")
            out[name] = (value * math.exp(-half), value * math.exp(half)) if math.isfinite(half) else (float("nan"), float("nan"))
        return out

    @property
    def relative_standard_errors(self) -> dict[str, float]:
        """se / estimate per parameter (NaN without standard errors)."""
        return {n: (se / v if v > 0 else float("nan")) for n, v, se in zip(self.NAMES, self.params, self.standard_errors, strict=True)}

    @property
    def poorly_identified(self) -> tuple[str, ...]:
        """Parameters whose relative standard error exceeds ``RSE_POORLY_IDENTIFIED``: the data hardly determine them."""
        return tuple(n for n, rse in self.relative_standard_errors.items() if rse > RSE_POORLY_IDENTIFIED)


class _PurchaseFitted(_Fitted):
    """What the three purchase models' results share: their name, the closed forms that score
    customers, and a saved form that records the model."""

    MODEL: ClassVar[str] = ""
    if TYPE_CHECKING:
        log_likelihood: float
        n_customers: int
        n_distinct: int
        converged: bool
        penalizer: float
        n_starts: int
        engine: str

    @property
    def label(self) -> str:
        """``BG/NBD``, ``MBG/NBD`` or ``Pareto/NBD``."""
        return MODEL_LABELS[self.MODEL]

    def p_alive(self, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(alive | x, t_x, T)."""
        raise NotImplementedError

    def unconditional_part(self, t: float, frequency: np.ndarray, T: np.ndarray) -> np.ndarray:
        """E[X(t) | x, t_x, T] / P(alive): a function of (x, T) only, in all three models."""
        raise NotImplementedError

    def no_purchase_if_alive(self, t: float, frequency: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(no purchase in (T, T + t] | alive at T)."""
        raise NotImplementedError

    @property
    def dropout_per_purchase(self) -> float:
        """The mean chance that a new customer leaves before the next purchase (BG/NBD: a/(a+b))."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        d = {"model": self.MODEL, **asdict(self)}  # type: ignore[call-overload]
        d["standard_errors"] = dict(zip(self.NAMES, self.standard_errors, strict=True))
        d["poorly_identified"] = list(self.poorly_identified)
        return d


@dataclass(frozen=True)
class BGNBDParams(_PurchaseFitted):
    """A fitted BG/NBD model (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way").

    ``r, alpha`` shape and scale the Gamma heterogeneity in purchase rates (alpha in
    periods), ``a, b`` the Beta heterogeneity in dropout probability.
    ``log_likelihood`` is the total over customers on the original time scale (eq. 6
    summed), comparable with the paper's -9,582.4 on CDNOW. ``converged`` is true only
    when the optimiser converged and the Hessian there is positive definite (a proper
    maximum); without standard errors the Hessian is not computed and only the
    optimiser's verdict counts.
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
    engine: str = "numpy"
    # the covariance of the log-parameters on the fitted customers (intervals), kept when the model is saved
    log_covariance: tuple[tuple[float, ...], ...] | None = None

    NAMES = ("r", "alpha", "a", "b")
    MODEL = "bgnbd"

    @property
    def params(self) -> tuple[float, float, float, float]:
        return (self.r, self.alpha, self.a, self.b)

    def p_alive(self, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
        return expectations.bgnbd_p_alive(self.params, frequency, recency, T)

    def unconditional_part(self, t: float, frequency: np.ndarray, T: np.ndarray) -> np.ndarray:
        return expectations.bgnbd_unconditional_part(self.params, t, frequency, T)

    def no_purchase_if_alive(self, t: float, frequency: np.ndarray, T: np.ndarray) -> np.ndarray:
        return expectations.bgnbd_no_purchase_if_alive(self.params, t, frequency, T)

    @property
    def dropout_per_purchase(self) -> float:
        return self.a / (self.a + self.b)


@dataclass(frozen=True)
class MBGNBDParams(_PurchaseFitted):
    """A fitted MBG/NBD model (Batislam, Denizel & Filiztekin 2007).

    BG/NBD's parameters with the same meaning, except that a customer may also leave right
    after the first purchase, so one-time buyers can be seen to leave. Fields as :class:`BGNBDParams`.
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
    engine: str = "numpy"
    log_covariance: tuple[tuple[float, ...], ...] | None = None  # as :class:`BGNBDParams`

    NAMES = ("r", "alpha", "a", "b")
    MODEL = "mbgnbd"

    @property
    def params(self) -> tuple[float, float, float, float]:
        return (self.r, self.alpha, self.a, self.b)

    def p_alive(self, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
        return expectations.mbgnbd_p_alive(self.params, frequency, recency, T)

    def unconditional_part(self, t: float, frequency: np.ndarray, T: np.ndarray) -> np.ndarray:
        return expectations.mbgnbd_unconditional_part(self.params, t, frequency, T)

    def no_purchase_if_alive(self, t: float, frequency: np.ndarray, T: np.ndarray) -> np.ndarray:
        return expectations.bgnbd_no_purchase_if_alive(self.params, t, frequency, T)

    @property
    def dropout_per_purchase(self) -> float:
        return self.a / (self.a + self.b)


@dataclass(frozen=True)
class ParetoNBDParams(_PurchaseFitted):
    """A fitted Pareto/NBD model (Schmittlein, Morrison & Colombo 1987; Fader & Hardie's note 009).

    Purchases are Poisson with rates ~ Gamma(r, alpha) while alive; lifetimes are
    exponential with dropout rates ~ Gamma(s, beta), so customers leave at any time, not
    only after a purchase. alpha and beta are in periods. beta is often weakly identified
    (the likelihood is flat along it); the log-likelihood is not. Other fields as :class:`BGNBDParams`.
    """

    r: float
    alpha: float
    s: float
    beta: float
    log_likelihood: float
    n_customers: int
    n_distinct: int
    converged: bool
    standard_errors: tuple[float, float, float, float]
    penalizer: float = 0.0
    n_starts: int = 1
    engine: str = "numpy"
    log_covariance: tuple[tuple[float, ...], ...] | None = None  # as :class:`BGNBDParams`

    NAMES = ("r", "alpha", "s", "beta")
    MODEL = "pareto"

    @property
    def params(self) -> tuple[float, float, float, float]:
        return (self.r, self.alpha, self.s, self.beta)

    def p_alive(self, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
        return expectations.pareto_p_alive(self.params, frequency, recency, T, log_a0=likelihood.pareto_log_a0)

    def unconditional_part(self, t: float, frequency: np.ndarray, T: np.ndarray) -> np.ndarray:
        return expectations.pareto_unconditional_part(self.params, t, frequency, T)

    def no_purchase_if_alive(self, t: float, frequency: np.ndarray, T: np.ndarray) -> np.ndarray:
        return expectations.pareto_no_purchase_if_alive(self.params, t, frequency, T)

    @property
    def dropout_per_purchase(self) -> float:
        return float(expectations.pareto_dies_first(self.r, self.alpha, self.s, self.beta))


PurchaseParams = BGNBDParams | MBGNBDParams | ParetoNBDParams
PARAMS_BY_MODEL: dict[str, type[BGNBDParams] | type[MBGNBDParams] | type[ParetoNBDParams]] = {
    "bgnbd": BGNBDParams, "mbgnbd": MBGNBDParams, "pareto": ParetoNBDParams,
}


@dataclass(frozen=True)
class GammaGammaParams(_Fitted):
    """A fitted Gamma-Gamma spend model (Fader, Hardie & Lee 2005b; Hardie's note 025).

    A customer's mean spend per transaction has shape ``p`` and a Gamma(q, v)
    distributed rate; the population mean spend is ``p v / (q - 1)``.
    ``frequency_spend_correlation`` checks the model's assumption that spend and
    frequency are independent (it should be near 0).

    When spend per purchase barely varies (see :class:`GammaGamma`) there is no model:
    ``p, q, v`` are NaN, ``observed_mean`` is the repeat customers' mean spend per
    purchase, the expected spend of every customer, and ``note`` says why in one line.
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
    engine: str = "numpy"
    observed_mean: float | None = None
    note: str | None = None

    NAMES = ("p", "q", "v")

    @property
    def params(self) -> tuple[float, float, float]:
        return (self.p, self.q, self.v)

    @property
    def spend_model(self) -> str:
        """``gamma-gamma``, or ``observed mean`` when spend barely varies."""
        return "gamma-gamma" if self.observed_mean is None else "observed mean"

    @property
    def population_mean(self) -> float:
        """E[M] = p v / (q - 1) (Hardie's note 025, eq. 4), or the observed mean."""
        if self.observed_mean is not None:
            return self.observed_mean
        return self.p * self.v / (self.q - 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["standard_errors"] = dict(zip(self.NAMES, self.standard_errors, strict=True))
        d["population_mean"] = self.population_mean
        d["spend_model"] = self.spend_model
        d["poorly_identified"] = list(self.poorly_identified)
        return d


# --------------------------------------------------------------------------- likelihoods


# --------------------------------------------------------------------------- helpers


def compress(summary: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Distinct rows of ``keys`` with a ``weight`` column counting customers, in sorted order."""
    return summary.lazy().group_by(keys).agg(pl.len().cast(pl.Float64).alias("weight")).sort(keys).collect(engine="streaming")


def float_columns(frame: pl.DataFrame, *cols: str) -> list[np.ndarray]:
    """Columns of ``frame`` as float64 numpy arrays, for the model functions."""
    return [frame[c].cast(pl.Float64).to_numpy() for c in cols]


def _four(values: tuple[float, ...]) -> tuple[float, float, float, float]:
    """A fit's ``(r, alpha, a, b)``-shaped tuple at its fixed length."""
    w, x, y, z = values
    return (w, x, y, z)


def _three(values: tuple[float, ...]) -> tuple[float, float, float]:
    """A fit's ``(p, q, v)``-shaped tuple at its fixed length."""
    x, y, z = values
    return (x, y, z)


def _stuck(fit: Optimum, start: tuple[float, ...] | None, n_params: int, scale: float, time_scaled: tuple[int, ...] = ()) -> bool:
    """True when the optimiser returned its starting point (a silent failure)."""
    start_log = np.full(n_params, likelihood.LIFETIMES_DEFAULT_START) if start is None else np.asarray(start)
    fitted = np.log(np.asarray(fit.params, dtype=float))
    for i in time_scaled:  # reported in input time, the start is on rescaled time
        fitted[i] = math.log(fit.params[i] * scale)
    return bool(np.all(np.abs(fitted - start_log) < STUCK_TOLERANCE))


def _usable(fit: Optimum) -> bool:
    values = np.asarray(fit.params, dtype=float)
    return fit.converged and bool(np.all(np.isfinite(values))) and bool(np.all(values > 0))


def _choose_engine(engine: str) -> str:
    """The engine a fit starts with: ``auto`` is the numpy engine at every size.

    It maximises the same objective as lifetimes' fitters (tested equal to 1e-6 relative,
    in practice 1e-13) without importing pandas, lifetimes and autograd: on a log of a few
    thousand customers those imports were most of a command's time. The other engine is
    still tried where the first ends at no proper maximum (see ``OTHER_ENGINE_MAX_ROWS``).
    """
    if engine not in ENGINES:
        raise InputError(f"engine '{engine}' is not one of {', '.join(ENGINES)}")
    return "numpy" if engine == "auto" else engine


def _fit_with_restarts(
    fit_once, starts, *, n_params: int, scale: float, valid=lambda fit: True, time_scaled: tuple[int, ...] = (),
    stalled: list[Optimum] | None = None,
) -> tuple[Optimum | None, int, list[str]]:
    """The first fit, over deterministic starting points, that converged, moved, is ``valid``
    and sits at a proper maximum (positive definite Hessian).

    Returns the fit, the number of starts tried and why each failed. When no start
    gives a proper maximum, the first fit that only lacked one (its ``converged`` is
    then reported false); None when nothing converged at all. Fits the optimiser gave up
    on short of its tolerance (:func:`_stalled`) are appended to ``stalled``, for
    :func:`_ridge_answer`.
    """
    problems: list[str] = []
    not_definite: Optimum | None = None
    for i, start in enumerate(starts, start=1):
        if not_definite is not None and problems[-1].startswith("the Hessian"):
            # A second start ending on a flat ridge as well: the data pin no interior maximum down (a
            # boundary, such as no dropout at all); more starts find the same ridge and only cost time.
            nxt = fit_once(None if start is None else np.asarray(start))
            if _usable(nxt) and nxt.hessian_positive_definite is False:
                return not_definite, i, [*problems, "the Hessian is not positive definite there either"]
            fit = nxt
        else:
            fit = fit_once(None if start is None else np.asarray(start))
        if not _usable(fit):
            problems.append(fit.message or "did not converge")
            if stalled is not None and _stalled(fit) and valid(fit):
                stalled.append(fit)
        elif _stuck(fit, start, n_params, scale, time_scaled):
            problems.append("stopped at its starting point")
        elif not valid(fit):
            problems.append("invalid parameters")
        elif fit.hessian_positive_definite is False:
            problems.append("the Hessian is not positive definite there (a saddle or a flat likelihood)")
            not_definite = not_definite or fit
        else:
            return fit, i, problems
    return not_definite, len(starts), problems


def _stalled(fit: Optimum) -> bool:
    """The optimiser stopped short of its tolerance where no step improved the objective (finite, positive parameters)."""
    values = np.asarray(fit.params, dtype=float)
    return "precision loss" in (fit.message or "") and values.size > 0 and bool(np.all(np.isfinite(values)) and np.all(values > 0))


def _ridge_answer(stalled: list[tuple[str, Optimum]], log_likelihood) -> tuple[str, Optimum] | None:
    """When no start converged with either engine: the stalled fits' (engine, fit) supremum, if it is one.

    On a flat ridge (no dropout at all: a and b run off together) BFGS stops with precision
    loss wherever rounding stalls it, a different point from each start (and on each CPU),
    all at one log-likelihood. At least two distinct points within ``RIDGE_AGREEMENT``
    (relative) of the best log-likelihood make it the data's answer: the best of them,
    reported as no proper maximum. Scattered log-likelihoods, or one point, are no answer.
    """
    if len(stalled) < 2:
        return None
    lls = np.array([log_likelihood(f.params) for _, f in stalled])
    best = int(np.argmax(np.where(np.isfinite(lls), lls, -np.inf)))
    if not np.isfinite(lls[best]):
        return None
    near = [f for (_, f), ll in zip(stalled, lls, strict=True) if lls[best] - ll <= RIDGE_AGREEMENT * abs(lls[best])]
    points = np.log(np.array([f.params for f in near], dtype=float))
    if len(near) < 2 or np.ptp(points, axis=0).max() < RIDGE_DISTINCT:
        return None
    engine, fit = stalled[best]
    return engine, replace(fit, converged=False, hessian_positive_definite=False)


def _proper_maximum(fit: Optimum) -> bool:
    return fit.converged and fit.hessian_positive_definite is not False


# --------------------------------------------------------------------------- estimators


class _Estimator:
    """The estimators' shared settings and scikit-learn's contract.

    Settings are keyword-only and stored as given (checked when ``fit`` starts); the
    learned state is ``params_``; using an estimator before ``fit`` raises
    :class:`NotFittedError`, as scikit-learn's ``check_is_fitted`` does.
    """

    DEFAULTS: ClassVar[dict[str, object]] = {"penalizer": 0.0, "tol": 1e-7, "engine": "auto", "standard_errors": True}

    def __init__(self, *, penalizer: float = 0.0, tol: float = 1e-7, engine: str = "auto", standard_errors: bool = True) -> None:
        self.penalizer = penalizer
        self.tol = tol
        self.engine = engine
        self.standard_errors = standard_errors

    def __getattr__(self, name: str):
        if name == "params_":
            raise NotFittedError(f"this {type(self).__name__} model is not fitted yet; call fit() first")
        raise AttributeError(name)

    def get_params(self) -> dict[str, object]:
        """The settings, as scikit-learn's ``get_params`` gives them."""
        return {name: getattr(self, name) for name in self.DEFAULTS}

    def __repr__(self) -> str:
        changed = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if v != self.DEFAULTS[k])
        return f"{type(self).__name__}({changed})"

    def summary(self) -> pl.DataFrame:
        """The fitted parameters as a table: estimate, standard error and 95% interval (log scale).

        One row per parameter, as lifetimes' ``summary``; the interval is NaN where the fit
        computed no standard errors.
        """
        params = check_is_fitted(self)
        intervals = params.intervals()
        return pl.DataFrame({
            "parameter": list(params.NAMES),
            "estimate": list(params.params),
            "standard_error": list(params.standard_errors),
            "lower_95": [intervals[n][0] for n in params.NAMES],
            "upper_95": [intervals[n][1] for n in params.NAMES],
        })


def check_is_fitted(est: _Estimator) -> PurchaseParams | GammaGammaParams:
    """The estimator's fitted parameters, or :class:`NotFittedError` (scikit-learn's ``check_is_fitted``)."""
    params = vars(est).get("params_")
    if params is None:
        raise NotFittedError(f"this {type(est).__name__} model is not fitted yet; call fit() first")
    return params


class _PurchaseEstimator(_Estimator):
    """What BG/NBD, MBG/NBD and Pareto/NBD estimators share: the fit over restarts and engines, and scoring.

    ``summary`` has ``frequency, recency, T`` in one period unit. ``penalizer`` is
    lifetimes' L2 penalty on the parameters (0 for the maximum-likelihood fit).
    ``engine`` is ``lifetimes``, ``numpy`` (same equations, vectorised; see
    :mod:`clv.likelihood`) or ``auto`` (numpy). When the chosen engine finds no proper maximum from any start,
    the other engine is tried before the fit fails. Without ``standard_errors`` the
    numpy engine skips the Hessian and reports NaN errors: for pipelines that only
    use the point estimates.
    """

    MODEL: ClassVar[str] = ""
    IMPROPER_REFIT_MAX_ROWS: ClassVar[int] = OTHER_ENGINE_MAX_ROWS  # an improper maximum tries the other engine up to this many rows
    STARTS: ClassVar[tuple[tuple[float, ...] | None, ...]] = BGNBD_STARTS
    TIME_SCALED: ClassVar[tuple[int, ...]] = (1,)  # parameters in time units (alpha; beta for Pareto/NBD)

    @classmethod
    def _fitters(cls) -> dict[str, Any]:
        return {"lifetimes": getattr(_lifetimes, f"fit_{cls.MODEL}"), "numpy": getattr(likelihood, f"fit_{cls.MODEL}")}

    @classmethod
    def _log_likelihood(cls, params: tuple[float, ...], x: np.ndarray, tx: np.ndarray, T: np.ndarray, w: np.ndarray) -> float:
        return float(getattr(likelihood, f"{cls.MODEL}_log_likelihood")(params, x, tx, T, w))

    @property
    def label(self) -> str:
        return MODEL_LABELS[self.MODEL]

    def _params(self) -> PurchaseParams:
        params = check_is_fitted(self)
        assert not isinstance(params, GammaGammaParams)
        return params

    def p_alive(self, summary: pl.DataFrame) -> np.ndarray:
        """P(alive | x, t_x, T) per row of ``summary``."""
        x, tx, T = float_columns(summary, *SUMMARY_KEYS)
        return self._params().p_alive(x, tx, T)

    def conditional_expected_purchases(self, summary: pl.DataFrame, t: float) -> np.ndarray:
        """E[X(t) | x, t_x, T] per row of ``summary``, ``t`` in its period."""
        x, tx, T = float_columns(summary, *SUMMARY_KEYS)
        return expected_purchases(self._params(), t, x, tx, T)

    def churn_risk(self, summary: pl.DataFrame, t: float) -> np.ndarray:
        """P(no purchase in the next ``t`` periods | x, t_x, T) per row of ``summary`` (see :func:`churn_risk`)."""
        x, tx, T = float_columns(summary, *SUMMARY_KEYS)
        return churn_risk(self._params(), t, x, tx, T)

    def fit(self, summary: pl.DataFrame) -> _PurchaseEstimator:
        """Fit on the distinct (frequency, recency, T) rows, restarting from fixed points and
        trying the other engine before giving up."""
        _check_settings(self)
        label = self.label
        n = summary.height
        if n < MIN_CUSTOMERS:
            raise ModelError(f"{label} needs at least {MIN_CUSTOMERS} customers to fit; got {n}")
        if summary["frequency"].max() == 0:
            raise ModelError(
                f"no customer made a repeat purchase, so {label} cannot tell purchase rate from dropout; "
                f"use a longer log or a finer {option('period')}"
            )
        if summary["T"].max() == 0:
            raise ModelError("every customer's first purchase is in the last period (T = 0 for all); the log needs more history")
        rows = compress(summary, SUMMARY_KEYS)
        x, tx, T, w = float_columns(rows, "frequency", "recency", "T", "weight")
        first = _choose_engine(self.engine)
        scale = 1.0 / T.max()
        fitters = self._fitters()
        tried: list[tuple[str, Optimum | None, int, list[str]]] = []
        stalled: list[tuple[str, Optimum]] = []
        for engine in (first, "numpy" if first == "lifetimes" else "lifetimes"):
            fitter = fitters[engine]
            stopped: list[Optimum] = []
            fit, n_starts, problems = _fit_with_restarts(
                lambda start, fitter=fitter: self._checked(fitter(x, tx, T, w, penalizer=self.penalizer, initial_log_params=start,
                                                                 tol=self.tol, standard_errors=self.standard_errors), x, tx, T, w, scale),
                self.STARTS,
                n_params=4,
                scale=scale,
                time_scaled=self.TIME_SCALED,
                stalled=stopped,
            )
            stalled += [(engine, f) for f in stopped]
            tried.append((engine, fit, n_starts, problems))
            # A converged fit, even at an improper maximum (a flat likelihood), is the data's answer, unless
            # the other engine, tried on a small log, finds a proper one.
            if fit is not None and (_proper_maximum(fit) or rows.height > self.IMPROPER_REFIT_MAX_ROWS):
                break
        usable = [t for t in tried if t[1] is not None]
        ridge = None if usable else _ridge_answer(stalled, lambda params: self._log_likelihood(params, x, tx, T, w))
        if ridge is not None:
            usable = [(ridge[0], ridge[1], sum(t[2] for t in tried), [])]
        if not usable:
            engine, _, n_starts, problems = tried[0]
            raise ModelError(
                f"{label} did not converge from {n_starts} starting points with either engine ({problems[0]}); "
                f"try a coarser {option('period')}, more data, or another {option('model')}"
            )
        engine, fit, n_starts, _ = next((t for t in usable if _proper_maximum(t[1])), usable[0])  # type: ignore[arg-type]
        assert fit is not None
        cls = PARAMS_BY_MODEL[self.MODEL]
        self.params_ = cls(
            *_four(fit.params),
            log_likelihood=self._log_likelihood(fit.params, x, tx, T, w),
            n_customers=n,
            n_distinct=rows.height,
            converged=_proper_maximum(fit),
            standard_errors=_four(fit.standard_errors),
            penalizer=self.penalizer,
            n_starts=n_starts,
            engine=engine,
        )
        return self

    def _checked(self, fit: Optimum, x: np.ndarray, tx: np.ndarray, T: np.ndarray, w: np.ndarray, scale: float) -> Optimum:
        """A fit whose optimiser reported no Hessian (lifetimes' Pareto/NBD) gets one here, when asked for
        standard errors: the numpy objective's, at the optimum."""
        if not (self.standard_errors and fit.hessian_positive_definite is None and _usable(fit)):
            return fit
        objective = getattr(likelihood, f"{self.MODEL}_objective")
        data = likelihood.BGNBDData if self.MODEL == "bgnbd" else likelihood.RowData
        ses, definite = likelihood.standard_errors_at(
            objective, lambda *c: data.build(*c, scale=scale), fit.params, (x, tx, T), w, self.TIME_SCALED,
        )
        return Optimum(fit.params, ses, fit.converged, fit.message, definite)


class BGNBD(_PurchaseEstimator):
    """BG/NBD estimator (Fader, Hardie & Lee 2005): ``BGNBD().fit(summary).params_``.

    P(alive) is eq. 2 of note 021 and E[X(t)] eq. 10 of the paper; settings as
    :class:`_PurchaseEstimator`.
    """

    MODEL = "bgnbd"


class MBGNBD(_PurchaseEstimator):
    """MBG/NBD estimator (Batislam, Denizel & Filiztekin 2007): ``MBGNBD().fit(summary).params_``.

    As BG/NBD, but a customer can leave right after the first purchase too; settings as
    :class:`_PurchaseEstimator`.
    """

    MODEL = "mbgnbd"


class ParetoNBD(_PurchaseEstimator):
    """Pareto/NBD estimator (Schmittlein, Morrison & Colombo 1987): ``ParetoNBD().fit(summary).params_``.

    Likelihood, P(alive) and E[X(t)] as in Fader & Hardie's note 009; the numpy engine's
    gradient is by central differences (the 2F1 terms have no handy derivative); settings
    as :class:`_PurchaseEstimator`.
    """

    MODEL = "pareto"
    # lifetimes fits Pareto/NBD by Nelder-Mead, tens of times slower than BFGS here (8.5 s against 0.8 s on the retail
    # log's June split): an improper maximum is not refitted with it.
    IMPROPER_REFIT_MAX_ROWS = 0
    STARTS = PARETO_STARTS
    TIME_SCALED = (1, 3)


ESTIMATORS: dict[str, type[_PurchaseEstimator]] = {"bgnbd": BGNBD, "mbgnbd": MBGNBD, "pareto": ParetoNBD}


def purchase_estimator(model: str | PurchaseModel, **settings: Any) -> _PurchaseEstimator:
    """The estimator of ``model`` (bgnbd, mbgnbd or pareto) with ``settings``."""
    name = model.value if isinstance(model, PurchaseModel) else model
    if name not in ESTIMATORS:
        raise InputError(f"model '{name}' is not one of {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name](**settings)


class GammaGamma(_Estimator):
    """Gamma-Gamma spend estimator, fitted on repeat customers with positive spend.

    ``penalizer``, ``engine`` and ``standard_errors`` as for :class:`BGNBD`.

    Spend that barely varies (uniform prices, subscriptions, fixed-price menus) has
    no Gamma-Gamma maximum: the likelihood keeps rising as p or q grows without
    bound. When the coefficient of variation of repeat customers' mean spend is below
    ``NEAR_CONSTANT_SPEND_CV``, or below ``FLAT_SPEND_CV`` and the fit fails from
    every start, no model is fitted and every customer's expected spend is the
    observed mean (see :class:`GammaGammaParams`). The population mean, not each
    customer's own mean: Gamma-Gamma's estimate is a weighted average of the two,
    and here the data cannot say how to weigh them; the population mean is what it
    gives customers without usable history, no customer's spend is more than about
    the coefficient of variation away from it, and it is one number a reader can
    check.
    """

    def conditional_expected_average_value(self, summary: pl.DataFrame) -> np.ndarray:
        """E[M | x, m_x] per row of ``summary`` (Hardie's note 025, eq. 5)."""
        params = check_is_fitted(self)
        assert isinstance(params, GammaGammaParams)
        x, m = float_columns(summary, "frequency", "monetary_value")
        return expected_average_value(params, x, m)

    def fit(self, summary: pl.DataFrame) -> GammaGamma:
        """Fit on customers with ``frequency > 0``; those whose ``monetary_value <= 0`` are excluded and counted."""
        _check_settings(self)
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
        mean_spend = float(np.mean(spend))
        spend_cv = float(np.std(spend) / mean_spend)
        engine = _choose_engine(self.engine)
        common = _SpendFitFields(n_customers=used.height, n_excluded=n_excluded, frequency_spend_correlation=corr,
                                 penalizer=self.penalizer, engine=engine)
        if spend_cv < NEAR_CONSTANT_SPEND_CV:
            self.params_ = _observed_mean_spend(
                mean_spend, n_starts=0, **common,
                why=f"spend per purchase barely varies (coefficient of variation {spend_cv:.2%} across "
                    f"{used.height:,} repeat customers, under {NEAR_CONSTANT_SPEND_CV:.0%}), so Gamma-Gamma has no fit",
            )
            return self
        fit, n_starts, problems, ran_off = None, 0, [], False
        for candidate in (engine, "numpy" if engine == "lifetimes" else "lifetimes"):  # the other engine before giving up
            fitter = _lifetimes.fit_gamma_gamma if candidate == "lifetimes" else likelihood.fit_gamma_gamma
            found, n_starts, tried = _fit_with_restarts(
                lambda start, fitter=fitter: fitter(x, m, w, penalizer=self.penalizer, initial_log_params=start, tol=self.tol,
                                                    standard_errors=self.standard_errors),
                GAMMA_GAMMA_STARTS,
                n_params=3,
                scale=1.0,
                valid=lambda f: f.params[1] > 1,  # q <= 1 leaves the mean spend undefined
            )
            problems += tried
            if found is not None and found.params[1] > GAMMA_GAMMA_Q_RIDGE and spend_cv < FLAT_SPEND_CV:
                ran_off = True  # the ridge q, v -> infinity: no interior maximum, however the Hessian came out there
                continue
            if found is not None and (fit is None or _proper_maximum(found)):
                fit, common["engine"] = found, candidate
            if fit is not None and _proper_maximum(fit):
                break
        if fit is None and spend_cv < FLAT_SPEND_CV:
            self.params_ = _observed_mean_spend(
                mean_spend, n_starts=n_starts, **common,
                why=("Gamma-Gamma has no interior maximum (q runs to infinity: customers' mean spends differ no more than "
                     "chance makes them)" if ran_off else f"Gamma-Gamma did not converge from {n_starts} starting points")
                    + f" and spend per purchase varies little (coefficient of variation {spend_cv:.1%}, under {FLAT_SPEND_CV:.0%})",
            )
            return self
        if fit is None:
            raise ModelError(
                f"Gamma-Gamma did not converge from {n_starts} starting points with either engine ({problems[0]}); "
                "check for extreme spend values (a few huge orders), or drop returns and zero-value lines"
            )
        self.params_ = GammaGammaParams(
            *_three(fit.params),
            log_likelihood=likelihood.gamma_gamma_log_likelihood(fit.params, x, m, w),
            converged=_proper_maximum(fit),
            standard_errors=_three(fit.standard_errors),
            n_starts=n_starts,
            **common,
        )
        return self


class _SpendFitFields(TypedDict):
    """The :class:`GammaGammaParams` fields a Gamma-Gamma fit knows before it runs (and keeps if it falls back)."""

    n_customers: int
    n_excluded: int
    frequency_spend_correlation: float
    penalizer: float
    engine: str


def _observed_mean_spend(mean_spend: float, *, why: str, n_starts: int, **fields: Unpack[_SpendFitFields]) -> GammaGammaParams:
    nan = float("nan")
    return GammaGammaParams(
        nan, nan, nan, log_likelihood=nan, converged=False, standard_errors=(nan, nan, nan),
        n_starts=n_starts,
        observed_mean=mean_spend,
        note=f"{why}; expected spend is the observed mean, {mean_spend:,.2f} per purchase, for every customer",
        **fields,
    )


def _check_settings(est: _Estimator) -> None:
    """The estimators' settings, checked when ``fit`` starts (scikit-learn validates there, not in ``__init__``)."""
    for name, value in (("penalizer", est.penalizer), ("tol", est.tol)):
        if not (_is_real(value) and math.isfinite(value)):
            raise InputError(f"{name} = {value!r} must be a finite number")
    if not 0 <= est.penalizer <= MAX_PENALIZER:
        raise InputError(f"penalizer = {est.penalizer!r} must be between 0 and {MAX_PENALIZER:g}; try 0.001")
    if not 0 < est.tol < 1:
        raise InputError(f"tol = {est.tol!r} must be between 0 and 1 (exclusive); the default is 1e-7")


# --------------------------------------------------------------------------- is there enough data


@dataclass(frozen=True)
class DataWarning:
    """A reason the predictions of a summary are unreliable: which rule, the data's value, the threshold, in words."""

    code: str  # "few_customers" or "short_history"
    value: float
    threshold: float
    message: str


def data_warnings(summary: pl.DataFrame, history_days: float) -> tuple[DataWarning, ...]:
    """Warnings when the data are below the minimum for reliable CLV and churn predictions.

    ``summary`` is the RFM summary (one row per customer); ``history_days`` is the
    observation span, from the first transaction to the end of observation, in days.
    The gates are those Klaviyo documents for its predictive CLV: at least
    ``MIN_RELIABLE_CUSTOMERS`` customers and ``MIN_RELIABLE_HISTORY_DAYS`` days of
    history. Fewer customers leave the four BG/NBD parameters loosely determined; a
    shorter history has seen too few customers leave for dropout to be estimated.
    Returns nothing when both are met; it prints nothing and never raises for data.
    """
    n = summary.height
    out = []
    if n < MIN_RELIABLE_CUSTOMERS:
        out.append(DataWarning(
            "few_customers", float(n), float(MIN_RELIABLE_CUSTOMERS),
            f"only {n:,} customers (under {MIN_RELIABLE_CUSTOMERS:,}): the model's parameters are loosely determined, "
            "so treat CLV and churn risk as rough",
        ))
    if history_days < MIN_RELIABLE_HISTORY_DAYS:
        out.append(DataWarning(
            "short_history", float(history_days), float(MIN_RELIABLE_HISTORY_DAYS),
            f"only {history_days:,.0f} days of history (under {MIN_RELIABLE_HISTORY_DAYS}): too few customers have had time "
            "to leave, so churn risk and CLV are unreliable; use a longer log if you have one",
        ))
    return tuple(out)


# --------------------------------------------------------------------------- value


@dataclass(frozen=True)
class Horizon:
    """A forecast horizon: ``12m``, ``39w``, ``90d`` or ``1y``, from 1 day to ``MAX_HORIZON_YEARS``."""

    days: float
    label: str

    UNITS: ClassVar[dict[str, float]] = {"d": 1.0, "w": DAYS_PER_WEEK, "m": DAYS_PER_MONTH, "y": DAYS_PER_YEAR}
    MAX_TEXT: ClassVar[int] = 20  # longer text is not a horizon; it is cut short in the message

    @classmethod
    def parse(cls, text: str) -> Horizon:
        shown = text if len(text) <= cls.MAX_TEXT else text[: cls.MAX_TEXT] + "..."
        match = re.fullmatch(r"\s*(\d{1,12}(?:\.\d{1,12})?)\s*([dwmy])\s*", text.lower()) if len(text) <= cls.MAX_TEXT else None
        if not match or float(match.group(1)) <= 0:
            raise InputError(f"horizon '{shown}' is not a duration such as 12m, 39w, 90d or 1y")
        days = float(match.group(1)) * cls.UNITS[match.group(2)]
        check_horizon_days(days, f"horizon '{shown}'")
        return cls(days, text.strip())

    def periods(self, period_days: float) -> float:
        return self.days / period_days

    @property
    def words(self) -> str:
        """The horizon as a reader says it: ``12m`` -> ``12 months``, ``1y`` -> ``1 year``."""
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dwmy])\s*", self.label.lower())
        if match is None:
            return self.label
        number, unit = match.group(1), {"d": "day", "w": "week", "m": "month", "y": "year"}[match.group(2)]
        return f"{number} {unit}" + ("" if float(number) == 1 else "s")


MAX_HORIZON_DAYS = MAX_HORIZON_YEARS * DAYS_PER_YEAR


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_horizon_days(days: float, what: str = "the horizon") -> None:
    """Horizons run from 1 day to ``MAX_HORIZON_YEARS`` years: beyond that no customer-base model
    means anything, and the monthly cash-flow schedule would grow without bound."""
    if not _is_real(days):
        raise InputError(f"{what} = {days!r} is not a number of days")
    if not (math.isfinite(days) and 1 <= days <= MAX_HORIZON_DAYS):
        how = "shorter than 1 day" if days < 1 else f"longer than {MAX_HORIZON_YEARS} years"
        raise InputError(f"{what} is {how}; give one from 1 day to {MAX_HORIZON_YEARS} years, such as 90d, 12m or {MAX_HORIZON_YEARS}y")


def check_discount_rate(rate: float) -> None:
    """An annual discount rate from 0 to ``MAX_ANNUAL_DISCOUNT_RATE`` (100% a year)."""
    if not (_is_real(rate) and 0 <= rate <= MAX_ANNUAL_DISCOUNT_RATE):
        raise InputError(f"annual discount rate {rate!r} must be between 0 and {MAX_ANNUAL_DISCOUNT_RATE:g} (0.10 is 10% a year)")


def cash_flow_days(horizon_days: float, days_per_month: float = DAYS_PER_MONTH) -> np.ndarray:
    """Month ends within the horizon, plus the horizon itself when it falls mid-month.

    At most ``MAX_HORIZON_YEARS * 12 + 1`` steps (:func:`check_horizon_days`), whatever the input.
    """
    check_horizon_days(horizon_days)
    n_months = math.floor(horizon_days / days_per_month + 1e-9)
    ends = np.arange(1, n_months + 1, dtype=float) * days_per_month
    if horizon_days - (ends[-1] if n_months else 0.0) > 1e-9:
        ends = np.append(ends, horizon_days)
    return ends


def discounted_expected_purchases(
    model: PurchaseParams,
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
    E[X(t)] is the model's conditional expectation (BG/NBD: FHL 2005 eq. 10). A horizon
    that ends mid-month adds a last, partial step discounted at its own time. Since
    E[X(t)] = U(x, T, t) P(alive) in every model, the sum is taken over U once per
    distinct (x, T) and multiplied by P(alive).
    """
    discounted, _, pair_idx = _pair_value_terms(
        model, frequency, T, horizon_days=horizon_days, annual_discount_rate=annual_discount_rate,
        period_days=period_days, days_per_month=days_per_month,
    )
    return discounted[pair_idx] * model.p_alive(frequency, recency, T)


def _pair_value_terms(
    model: PurchaseParams,
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
    check_discount_rate(annual_discount_rate)
    pair_x, pair_T, pair_idx = _pairs(frequency, T)
    d_month = (1.0 + annual_discount_rate) ** (1.0 / 12.0) - 1.0
    total = np.zeros_like(pair_x)
    previous = np.zeros_like(pair_x)
    days = cash_flow_days(horizon_days, days_per_month)
    for t_days in days:
        cumulative = model.unconditional_part(t_days / period_days, pair_x, pair_T)
        total += (cumulative - previous) / (1.0 + d_month) ** (t_days / days_per_month)
        previous = cumulative
    if days[-1] != horizon_days:  # a month end within rounding of the horizon: evaluate at the horizon itself
        previous = model.unconditional_part(horizon_days / period_days, pair_x, pair_T)
    return total, previous, pair_idx


def _pairs(frequency: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (x, T) pairs and each row's index into them (one 1-D integer key, not a row-wise unique)."""
    x_vals, x_idx = likelihood.factorize(np.asarray(frequency, float))
    T_vals, T_idx = likelihood.factorize(np.asarray(T, float))
    keys, pair_idx = likelihood.factorize(x_idx.astype(np.int64) * len(T_vals) + T_idx)
    return x_vals[keys // len(T_vals)], T_vals[keys % len(T_vals)], pair_idx


def expected_purchases(model: PurchaseParams, t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """E[X(t) | x, t_x, T] of the model, the (x, T) part once per distinct pair, times P(alive)."""
    pair_x, pair_T, pair_idx = _pairs(frequency, T)
    unconditional = model.unconditional_part(t, pair_x, pair_T)
    return unconditional[pair_idx] * model.p_alive(frequency, recency, T)


def churn_risk(model: PurchaseParams, t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray,
               p_alive: np.ndarray | None = None) -> np.ndarray:
    """P(no purchase in the next ``t`` periods | x, t_x, T) = 1 - P(alive) (1 - P(none | alive)).

    The probability marketers read as churn, defined by every model: BG/NBD and MBG/NBD
    give P(none | alive) = ((alpha+T)/(alpha+T+t))^(r+x); Pareto/NBD its own closed form
    (:func:`clv.expectations.pareto_no_purchase_if_alive`). ``1 - churn_risk`` is the
    probability of at least one purchase, what cross-sell multiplies offers by.
    """
    pair_x, pair_T, pair_idx = _pairs(frequency, T)
    none_if_alive = model.no_purchase_if_alive(t, pair_x, pair_T)[pair_idx]
    alive = model.p_alive(frequency, recency, T) if p_alive is None else p_alive
    return np.clip(1.0 - alive * (1.0 - none_if_alive), 0.0, 1.0)


def expected_average_value(gamma_gamma: GammaGammaParams, frequency: np.ndarray, monetary_value: np.ndarray) -> np.ndarray:
    """E[M | x, m_x] (note 025, eq. 5); repeat spend below 0 counts as 0.

    Without a model (spend barely varies) it is the observed mean for everyone.
    """
    if gamma_gamma.observed_mean is not None:
        return np.full(len(np.asarray(frequency)), gamma_gamma.observed_mean, dtype=float)
    return expectations.gamma_gamma_expected_average(gamma_gamma.params, frequency, np.maximum(monetary_value, 0.0))


def score_customers(
    summary: pl.DataFrame,
    model: PurchaseParams,
    gamma_gamma: GammaGammaParams,
    *,
    period_days: float,
    horizon: Horizon,
    annual_discount_rate: float = 0.10,
) -> pl.DataFrame:
    """Add ``p_alive, churn_risk, expected_purchases, expected_avg_value, clv`` to an RFM summary.

    * ``p_alive``: P(alive | x, t_x, T) under the purchase model (BG/NBD: note 021, eq. 2);
    * ``churn_risk``: P(no purchase within the horizon | x, t_x, T) (:func:`churn_risk`);
    * ``expected_purchases``: E[X(horizon) | x, t_x, T] (BG/NBD: FHL 2005 eq. 10);
    * ``expected_avg_value``: E[M | x, m_x] (note 025, eq. 5): the population mean for
      customers with no repeat purchase; repeat spend below 0 counts as 0;
    * ``clv``: ``expected_avg_value`` x discounted expected purchases (see
      :func:`discounted_expected_purchases`).

    The hypergeometric part of E[X(t)] depends only on (frequency, T), so it is
    evaluated once per distinct pair; everything else is one array operation.
    """
    if gamma_gamma.observed_mean is None and gamma_gamma.q <= 1:
        raise ModelError(f"Gamma-Gamma q = {gamma_gamma.q:.3g} <= 1: mean spend is undefined")
    x, tx, T, money = float_columns(summary, *SUMMARY_KEYS, "monetary_value")
    p_alive = model.p_alive(x, tx, T)
    discounted, at_horizon, pair_idx = _pair_value_terms(
        model, x, T, horizon_days=horizon.days, annual_discount_rate=annual_discount_rate, period_days=period_days
    )
    avg_value = expected_average_value(gamma_gamma, x, money)
    out = summary.with_columns(
        pl.Series("p_alive", p_alive),
        pl.Series("churn_risk", churn_risk(model, horizon.periods(period_days), x, tx, T, p_alive)),
        pl.Series("expected_purchases", at_horizon[pair_idx] * p_alive),
        pl.Series("expected_avg_value", avg_value),
        pl.Series("clv", avg_value * (discounted[pair_idx] * p_alive)),
    )
    _check_finite(out, ["p_alive", "churn_risk", "expected_purchases", "expected_avg_value", "clv"])
    return out


def _check_finite(frame: pl.DataFrame, columns: list[str]) -> None:
    for col in columns:
        bad = frame.filter(~pl.col(col).is_finite() | pl.col(col).is_null())
        if bad.height:
            row = bad.row(0, named=True)
            raise ModelError(
                f"{col} is not finite for {bad.height:,} customers (first: frequency={row['frequency']}, "
                f"recency={row['recency']}, T={row['T']}); try a coarser {option('period')} or a small {option('penalizer')}"
            )


# --------------------------------------------------------------------------- saved models


MODEL_FORMAT = "clvx-model"
MODEL_FORMAT_VERSION = 3  # 2 added Gamma-Gamma's observed-mean fallback (observed_mean, note); 3 the purchase model
MAX_PARAMETER = 1e10  # beyond this a saved parameter is corrupt, not fitted
MAX_COUNT = 10**12
REFIT = "fit and save the model again with clvx fit --save"


def model_document(purchases: PurchaseParams, gamma_gamma: GammaGammaParams, *, period: str, clvx_version: str) -> dict:
    """The fitted models as a JSON-ready document (never a pickle).

    ``model`` names the purchase model, whose fit is under its own key (``bgnbd``,
    ``mbgnbd`` or ``pareto``); files from before format 3 have no ``model`` and are BG/NBD.
    """
    return {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "period": period,
        "model": purchases.MODEL,
        "versions": {"clvx": clvx_version, "lifetimes": _lifetimes.lifetimes_version()},
        purchases.MODEL: _null_for_nan(purchases.to_dict()),
        "gamma_gamma": _null_for_nan(gamma_gamma.to_dict()),
    }


def _null_for_nan(value: Any) -> Any:
    """JSON has no NaN: a number not computed (a standard error of a fit without the Hessian) is null, which the reader accepts."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _null_for_nan(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_null_for_nan(v) for v in value]
    return value


def _shown(value: object) -> str:
    """A JSON value as a short text for a message, whatever its size or depth."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int):
        if value.bit_length() > 64:  # str() of a huge integer is slow, and refused past 4,300 digits
            return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1:,} digits"
        return str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")
    return repr(value)


class _Reader:
    """Reads fields of one saved model, each checked, with one clear InputError for the first bad one."""

    def __init__(self, doc: dict, source: str, prefix: str) -> None:
        self.doc, self.source, self.prefix = doc, source, prefix

    def fail(self, key: str, value: object, rule: str) -> InputError:
        return InputError(f"{self.source}: field '{self.prefix}{key}' is {_shown(value)}, but {rule}; {REFIT}")

    def get(self, key: str) -> object:
        if key not in self.doc:
            raise InputError(f"{self.source}: field '{self.prefix}{key}' is missing; {REFIT}")
        return self.doc[key]

    def real(self, key: str, low: float, high: float, *, rule: str, nullable: bool = False, open_low: bool = False) -> float:
        value = self.get(key)
        if value is None and nullable:
            return float("nan")
        if not _is_real(value) or (isinstance(value, int) and abs(value) > MAX_COUNT * MAX_PARAMETER):
            raise self.fail(key, value, f"it must be a number ({rule})")
        number = to_float(value)  # a real number, checked above
        if not math.isfinite(number) or number < low or number > high or (open_low and number == low):
            raise self.fail(key, value, f"it must be {rule}")
        return number

    def parameter(self, key: str) -> float:
        return self.real(key, 0.0, MAX_PARAMETER, rule=f"a positive number up to {MAX_PARAMETER:g}", open_low=True)

    def count(self, key: str) -> int:
        value = self.get(key)
        if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT):
            raise self.fail(key, value, f"it must be a whole number from 0 to {MAX_COUNT:,}")
        return value

    def flag(self, key: str) -> bool:
        value = self.get(key)
        if not isinstance(value, bool):
            raise self.fail(key, value, "it must be true or false")
        return value

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.get(key)
        if value not in allowed or not isinstance(value, str):
            raise self.fail(key, value, f"it must be one of {', '.join(allowed)}")
        return value

    def errors(self, names: tuple[str, ...]) -> tuple[float, ...]:
        ses = self.get("standard_errors")
        if not isinstance(ses, dict):
            raise self.fail("standard_errors", ses, f"it must be an object with {', '.join(names)}")
        inner = _Reader(ses, self.source, f"{self.prefix}standard_errors.")
        return tuple(inner.real(n, 0.0, math.inf, rule="a number from 0 up, or null", nullable=True) for n in names)

    def covariance(self, key: str, size: int) -> tuple[tuple[float, ...], ...] | None:
        """An optional ``size`` x ``size`` covariance matrix: symmetric, finite, positive definite."""
        value = self.doc.get(key)
        if value is None:
            return None
        rule = f"it must be {size} lists of {size} finite numbers, a symmetric positive definite matrix, or null"
        if not (isinstance(value, list) and len(value) == size
                and all(isinstance(row, list) and len(row) == size and all(_is_real(v) and abs(v) <= MAX_PARAMETER for v in row) for row in value)):
            raise self.fail(key, value, rule)
        matrix = np.array([[to_float(v) for v in row] for row in value])
        if not (np.all(np.isfinite(matrix)) and np.allclose(matrix, matrix.T, rtol=1e-9, atol=0.0) and likelihood.positive_definite(matrix)):
            raise self.fail(key, value, rule)
        return tuple(tuple(float(v) for v in row) for row in matrix)

    def section(self, key: str) -> _Reader:
        value = self.get(key)
        if not isinstance(value, dict):
            raise self.fail(key, value, "it must be an object")
        return _Reader(value, self.source, f"{self.prefix}{key}.")


def models_from_document(doc: object, source: str) -> tuple[str, PurchaseParams, GammaGammaParams]:
    """Rebuild fitted parameters from :func:`model_document`'s output, checking every field.

    Each field must have its type and range (a bool is not a number, parameters are
    positive and at most ``MAX_PARAMETER``, counts are whole numbers, NaN and
    infinities are refused); the first that does not is one :class:`InputError` naming
    the field, its value and what to do. Files of a newer format are refused.
    """
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise InputError(f"{source} is not a clvx model file (save one with clvx fit --save)")
    top = _Reader(doc, source, "")
    version = top.get("format_version")
    if not (isinstance(version, int) and not isinstance(version, bool) and 1 <= version <= MODEL_FORMAT_VERSION):
        if isinstance(version, int) and not isinstance(version, bool) and version > MODEL_FORMAT_VERSION:
            raise InputError(
                f"{source} was saved by a newer clvx (format_version {_shown(version)}; this one reads up to "
                f"{MODEL_FORMAT_VERSION}); upgrade clvx, or {REFIT}"
            )
        raise top.fail("format_version", version, f"it must be a whole number from 1 to {MODEL_FORMAT_VERSION}")
    periods = ("day", "week", "month")
    period = top.choice("period", periods)
    engines = tuple(e for e in ENGINES if e != "auto")

    def fit_fields(section: _Reader) -> dict[str, Any]:
        """The fields every saved fit has, read and checked the same way for both models."""
        return {
            "log_likelihood": section.real("log_likelihood", -math.inf, math.inf, rule="a finite number or null", nullable=True),
            "n_customers": section.count("n_customers"),
            "converged": section.flag("converged"),
            "penalizer": section.real("penalizer", 0.0, MAX_PENALIZER, rule=f"a number from 0 to {MAX_PENALIZER:g}"),
            "n_starts": section.count("n_starts"),
            "engine": section.choice("engine", engines),
        }

    model = top.choice("model", tuple(PARAMS_BY_MODEL)) if version >= 3 else "bgnbd"
    cls = PARAMS_BY_MODEL[model]
    bg = top.section(model)
    bgp = cls(
        *_four(tuple(bg.parameter(n) for n in cls.NAMES)),
        n_distinct=bg.count("n_distinct"),
        standard_errors=_four(bg.errors(cls.NAMES)),
        **fit_fields(bg),
        log_covariance=bg.covariance("log_covariance", len(cls.NAMES)),  # files before it was saved have none
    )

    gg = top.section("gamma_gamma")
    observed = gg.doc.get("observed_mean")
    if observed is None:
        spend = tuple(gg.parameter(n) for n in GammaGammaParams.NAMES)
        if spend[1] <= 1:
            raise gg.fail("q", gg.doc["q"], "it must be above 1 (the mean spend is p v / (q - 1))")
        observed_mean, note = None, None
    else:
        observed_mean = gg.real("observed_mean", 0.0, MAX_PARAMETER, rule=f"a positive amount up to {MAX_PARAMETER:g}", open_low=True)
        for n in GammaGammaParams.NAMES:
            if gg.doc.get(n) is not None:
                raise gg.fail(n, gg.doc[n], "a model with an observed_mean has no Gamma-Gamma parameters (null)")
        spend = (float("nan"),) * 3
        note = gg.doc.get("note")
        if not (note is None or (isinstance(note, str) and len(note) <= 1000)):
            raise gg.fail("note", note, "it must be a line of text or null")
    ggp = GammaGammaParams(
        *_three(spend),
        n_excluded=gg.count("n_excluded"),
        standard_errors=_three(gg.errors(GammaGammaParams.NAMES)),
        frequency_spend_correlation=gg.real("frequency_spend_correlation", -1.0, 1.0, rule="a number from -1 to 1, or null", nullable=True),
        **fit_fields(gg),
        observed_mean=observed_mean,
        note=note,
    )
    return period, bgp, ggp
