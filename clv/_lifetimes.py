"""The one adapter to ``lifetimes``: numpy arrays in, numpy arrays and plain tuples out.

Nothing else in clvx imports lifetimes or pandas. lifetimes fits on time rescaled
so that the largest T is 1, minimises the *mean* negative log-likelihood, prints
scipy's result to stdout when it fails, and raises its own ConvergenceError; all
of that stays in here.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

from clv import threads
from clv.likelihood import Optimum, positive_definite


def _quietly():
    """Silence lifetimes' prints and pandas/numpy warnings during a call."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(np.errstate(all="ignore"))
    return stack


def _standard_errors(fitter) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in np.asarray(fitter.standard_errors_, dtype=float))
    except Exception:  # noqa: BLE001 - a singular Hessian leaves no standard errors
        return tuple(float("nan") for _ in fitter.params_)


@threads.limited(blas=1)  # as clv.likelihood's fits: vector work, which BLAS threads only slow
def _fit(fitter, names: tuple[str, ...], *data: np.ndarray, weights: np.ndarray, initial_log_params, tol: float) -> Optimum:
    """Run a lifetimes fitter quietly; a failure becomes an unconverged :class:`Optimum`."""
    from lifetimes.fitters import ConvergenceError

    with _quietly():
        try:
            fitter.fit(*data, weights=weights, initial_params=initial_log_params, tol=tol)
        except (ConvergenceError, np.linalg.LinAlgError, FloatingPointError, ValueError) as exc:
            nan = (float("nan"),) * len(names)
            return Optimum(nan, nan, False, str(exc).strip())
        definite = positive_definite(getattr(fitter, "_hessian_", np.nan))
        ses = _standard_errors(fitter) if definite else (float("nan"),) * len(names)
        return Optimum(tuple(float(fitter.params_[k]) for k in names), ses, True, "converged", definite)


def fit_bgnbd(
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    weights: np.ndarray,
    *,
    penalizer: float = 0.0,
    initial_log_params: np.ndarray | None = None,
    tol: float = 1e-7,
    standard_errors: bool = True,  # noqa: ARG001 - lifetimes always computes them
) -> Optimum:
    """Fit BG/NBD with ``lifetimes.BetaGeoFitter``; ``params`` are ``(r, alpha, a, b)``.

    ``initial_log_params`` are logs of ``(r, alpha, a, b)`` with alpha on lifetimes'
    rescaled time (max T = 1).
    """
    from lifetimes import BetaGeoFitter

    return _fit(BetaGeoFitter(penalizer_coef=penalizer), ("r", "alpha", "a", "b"), frequency, recency, T,
                weights=weights, initial_log_params=initial_log_params, tol=tol)


def fit_mbgnbd(
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    weights: np.ndarray,
    *,
    penalizer: float = 0.0,
    initial_log_params: np.ndarray | None = None,
    tol: float = 1e-7,
    standard_errors: bool = True,  # noqa: ARG001 - lifetimes always computes them
) -> Optimum:
    """Fit MBG/NBD with ``lifetimes.ModifiedBetaGeoFitter``; ``params`` are ``(r, alpha, a, b)``.

    ``initial_log_params`` as for :func:`fit_bgnbd`.
    """
    from lifetimes import ModifiedBetaGeoFitter

    return _fit(ModifiedBetaGeoFitter(penalizer_coef=penalizer), ("r", "alpha", "a", "b"), frequency, recency, T,
                weights=weights, initial_log_params=initial_log_params, tol=tol)


PARETO_MAX_ITERATIONS = 4000


def fit_pareto(
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    weights: np.ndarray,
    *,
    penalizer: float = 0.0,
    initial_log_params: np.ndarray | None = None,
    tol: float = 1e-7,
    standard_errors: bool = True,  # noqa: ARG001 - lifetimes computes none; the caller does
) -> Optimum:
    """Fit Pareto/NBD with ``lifetimes.ParetoNBDFitter`` (Nelder-Mead); ``params`` are ``(r, alpha, s, beta)``.

    lifetimes starts Pareto/NBD from a random point and on the natural scale; here it starts
    from ``exp(initial_log_params)`` (logs on rescaled time, as for BG/NBD), or from ones, so
    a fit is repeatable. It computes no Hessian: ``hessian_positive_definite`` is None and the
    standard errors NaN, for the caller to compute at the optimum.
    """
    from lifetimes import ParetoNBDFitter

    start = np.ones(4) if initial_log_params is None else np.exp(np.asarray(initial_log_params, float))
    fitter = ParetoNBDFitter(penalizer_coef=penalizer)
    nan = (float("nan"),) * 4
    with _quietly():
        try:
            fitter.fit(frequency, recency, T, weights=weights, initial_params=start, tol=tol, maxiter=PARETO_MAX_ITERATIONS)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError) as exc:
            return Optimum(nan, nan, False, str(exc).strip())
    params = tuple(float(fitter.params_[k]) for k in ("r", "alpha", "s", "beta"))
    ok = bool(np.all(np.isfinite(params))) and np.isfinite(fitter._negative_log_likelihood_)
    return Optimum(params, nan, ok, "converged" if ok else "the likelihood is not finite at the optimum")


def fit_gamma_gamma(
    frequency: np.ndarray,
    monetary_value: np.ndarray,
    weights: np.ndarray,
    *,
    penalizer: float = 0.0,
    initial_log_params: np.ndarray | None = None,
    tol: float = 1e-7,
    standard_errors: bool = True,  # noqa: ARG001 - lifetimes always computes them
) -> Optimum:
    """Fit Gamma-Gamma with ``lifetimes.GammaGammaFitter``; ``params`` are ``(p, q, v)``."""
    from lifetimes import GammaGammaFitter

    return _fit(GammaGammaFitter(penalizer_coef=penalizer), ("p", "q", "v"), frequency, monetary_value,
                weights=weights, initial_log_params=initial_log_params, tol=tol)


def _bgnbd(params: tuple[float, float, float, float]):
    import pandas as pd
    from lifetimes import BetaGeoFitter

    fitter = BetaGeoFitter()
    fitter.params_ = pd.Series(params, index=["r", "alpha", "a", "b"])
    return fitter


def bgnbd_expected_purchases(
    params: tuple[float, float, float, float], t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """E[X(t) | x, t_x, T]: lifetimes' ``conditional_expected_number_of_purchases_up_to_time``."""
    with _quietly():
        return np.asarray(_bgnbd(params).conditional_expected_number_of_purchases_up_to_time(t, frequency, recency, T), dtype=float)


def bgnbd_p_alive(params: tuple[float, float, float, float], frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(alive | x, t_x, T): lifetimes' ``conditional_probability_alive``."""
    with _quietly():
        return np.asarray(_bgnbd(params).conditional_probability_alive(frequency, recency, T), dtype=float)


LIFETIMES_FITTERS = {"bgnbd": "BetaGeoFitter", "mbgnbd": "ModifiedBetaGeoFitter", "pareto": "ParetoNBDFitter"}
LIFETIMES_NAMES = {"bgnbd": ("r", "alpha", "a", "b"), "mbgnbd": ("r", "alpha", "a", "b"), "pareto": ("r", "alpha", "s", "beta")}


def _purchase_fitter(model: str, params: tuple[float, ...]):
    import lifetimes
    import pandas as pd

    fitter = getattr(lifetimes, LIFETIMES_FITTERS[model])()
    fitter.params_ = pd.Series(params, index=list(LIFETIMES_NAMES[model]))
    return fitter


def expected_purchases(model: str, params: tuple[float, ...], t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """E[X(t) | x, t_x, T] of ``model`` (bgnbd, mbgnbd or pareto), as lifetimes computes it."""
    with _quietly():
        fitter = _purchase_fitter(model, params)
        return np.asarray(fitter.conditional_expected_number_of_purchases_up_to_time(t, frequency, recency, T), dtype=float)


def p_alive(model: str, params: tuple[float, ...], frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(alive | x, t_x, T) of ``model``, as lifetimes computes it."""
    with _quietly():
        return np.asarray(_purchase_fitter(model, params).conditional_probability_alive(frequency, recency, T), dtype=float)


def pareto_no_purchase(params: tuple[float, ...], t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(X(T, T + t) = 0 | x, t_x, T) under Pareto/NBD: lifetimes' ``conditional_probability_of_n_purchases_up_to_time``."""
    with _quietly():
        fitter = _purchase_fitter("pareto", params)
        return np.array([float(fitter.conditional_probability_of_n_purchases_up_to_time(0, t, x, tx, big_t))
                         for x, tx, big_t in zip(frequency, recency, T, strict=True)])


def gamma_gamma_expected_average(params: tuple[float, float, float], frequency: np.ndarray, monetary_value: np.ndarray) -> np.ndarray:
    """E[M | x, m_x]: lifetimes' ``conditional_expected_average_profit``."""
    import pandas as pd
    from lifetimes import GammaGammaFitter

    fitter = GammaGammaFitter()
    fitter.params_ = pd.Series(params, index=["p", "q", "v"])
    with _quietly():
        return np.asarray(fitter.conditional_expected_average_profit(frequency, monetary_value), dtype=float)


def lifetimes_version() -> str:
    from importlib.metadata import version

    return version("lifetimes")
