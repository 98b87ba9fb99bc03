"""The BG/NBD and Gamma-Gamma closed forms in numpy, vectorised for millions of customers.

These are the equations lifetimes implements, written so that every term that
depends on one variable only is computed once per distinct value and gathered:
``gammaln(r + x)`` once per distinct frequency, ``log(alpha + T)`` once per distinct
T. A likelihood evaluation over a million customers then costs a few array
operations, and the conditional expectation's hypergeometric term, which depends
on (x, T) but not on t_x, is evaluated once per distinct (x, T) pair.

From ``WARM_START_CUSTOMERS`` customers on, BFGS first fits a fixed-seed sample of
about ``WARM_SAMPLE_CUSTOMERS`` and starts the full fit from there with the sample's
curvature; on a million customers that is 5 full evaluations instead of 23.

Pareto/NBD's A_0 term is a 2F1 without convenient derivatives; its fit integrates the same
quantity piece by piece on the grid of distinct times instead, which gives the gradient in the
same pass (:func:`pareto_grid_objective`).

The total log-likelihoods on the original scale (what a fit reports) sit beside the
objectives the optimiser climbs; the conditional expectations that score customers are
in :mod:`clv.expectations`. The tests hold every function here to lifetimes' own
results (parameters to 1e-6 relative).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from clv import threads
from clv.lazy import lazy_module

special = lazy_module("scipy.special")  # betaln, digamma, gammaln: loaded when a model is first fitted or scored

LIFETIMES_DEFAULT_START = 0.1
HESSIAN_STEP = 1e-5
WARM_START_CUSTOMERS = 200_000  # from this many customers, start from a fit on a sample
WARM_SAMPLE_CUSTOMERS = 50_000
WARM_SEED = 0


@dataclass(frozen=True)
class Optimum:
    """A maximum-likelihood fit: parameters on the natural scale and how it went.

    ``converged`` is the optimiser's own verdict; ``hessian_positive_definite`` says
    whether the point it stopped at is a proper maximum (None when the Hessian was not
    computed, i.e. without standard errors).
    """

    params: tuple[float, ...]
    standard_errors: tuple[float, ...]
    converged: bool
    message: str
    hessian_positive_definite: bool | None = None


def load_libraries() -> None:
    """Import what a fit runs on now (scipy's optimiser and special functions), rather than at the first fit."""
    from scipy.optimize import minimize  # noqa: F401

    _ = special.gammaln  # the lazily loaded module runs its code on this first read


def positive_definite(matrix: npt.ArrayLike) -> bool:
    """True when a symmetric matrix is finite and positive definite (a Cholesky factor exists)."""
    m = np.asarray(matrix, dtype=float)
    if not np.all(np.isfinite(m)):
        return False
    try:
        np.linalg.cholesky(m)
    except np.linalg.LinAlgError:
        return False
    return True


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)``, by a lookup table when the values are whole
    numbers in a modest range (frequencies, days, weeks): linear time instead of a sort."""
    values = np.asarray(values)
    if values.size:
        low, high = float(values.min()), float(values.max())
        if np.isfinite(low) and np.isfinite(high) and high - low <= max(4 * values.size, 1_000_000):
            offset = values - low
            whole = offset.astype(np.int64)
            if np.array_equal(whole, offset):
                present = np.zeros(int(high - low) + 1, dtype=bool)
                present[whole] = True
                codes = np.cumsum(present) - 1
                return np.flatnonzero(present) + low if values.dtype.kind == "f" else (np.flatnonzero(present) + int(low)).astype(values.dtype), codes[whole]
    uniq, idx = np.unique(values, return_inverse=True)
    return uniq, idx


# --------------------------------------------------------------------------- BG/NBD


@dataclass(frozen=True)
class BGNBDData:
    """Compressed BG/NBD inputs on lifetimes' rescaled time (largest T = 1).

    ``w_x`` sums the weights per distinct frequency so that terms of x alone are
    summed once per distinct x; only rows with x > 0 need per-row work, since for
    x = 0 the likelihood's second branch vanishes.
    """

    weights: np.ndarray
    x_vals: np.ndarray
    w_x: np.ndarray
    # x > 0 rows, as indices into the distinct values
    rep_w: np.ndarray
    rep_x: np.ndarray
    rep_x_idx: np.ndarray
    rep_T_idx: np.ndarray
    rep_tx_idx: np.ndarray
    # x = 0 rows reduce to a weight per distinct T
    zero_w_T: np.ndarray
    T_vals: np.ndarray
    tx_vals: np.ndarray
    scale: float

    @classmethod
    def build(
        cls, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray, weights: np.ndarray, *, scale: float | None = None
    ) -> BGNBDData:
        scale = 1.0 / float(np.max(T)) if scale is None else scale
        w = np.asarray(weights, float)
        x_vals, x_idx = factorize(frequency)
        T_vals, T_idx = factorize(np.asarray(T, float) * scale)
        tx_vals, tx_idx = factorize(np.asarray(recency, float) * scale)
        rep = np.asarray(frequency) > 0
        idx32 = lambda a: a.astype(np.int32)  # noqa: E731 - narrower indices gather faster
        return cls(
            weights=w,
            x_vals=x_vals.astype(float),
            w_x=np.bincount(x_idx, weights=w, minlength=len(x_vals)),
            rep_w=w[rep],
            rep_x=np.asarray(frequency, float)[rep],
            rep_x_idx=idx32(x_idx[rep]),
            rep_T_idx=idx32(T_idx[rep]),
            rep_tx_idx=idx32(tx_idx[rep]),
            zero_w_T=np.bincount(T_idx[~rep], weights=w[~rep], minlength=len(T_vals)),
            T_vals=T_vals,
            tx_vals=tx_vals,
            scale=scale,
        )


def bgnbd_log_likelihood(params: tuple[float, ...], frequency: np.ndarray, recency: np.ndarray, T: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Total BG/NBD log-likelihood, Fader, Hardie & Lee 2005, eq. 6 (log-sum-exp form of Hardie's note 004, sec. 7)."""
    r, alpha, a, b = params
    x = np.asarray(frequency, dtype=float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = special.betaln(a, b + x) - special.betaln(a, b)
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
        special.gammaln(p * x + q) - special.gammaln(p * x) - special.gammaln(q) + q * np.log(v)
        + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(x * m + v)
    )
    return float(np.sum(w * ll))


def bgnbd_objective(log_params: np.ndarray, d: BGNBDData, penalizer: float = 0.0) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood and its gradient in log-parameters.

    The likelihood is Fader, Hardie & Lee 2005, eq. 6, in the log-sum-exp form of
    Hardie's note 004 (section 7), exactly as lifetimes' objective, penalty included:
    ``ll = A1 + A2 + log(exp(A3) + delta(x>0) exp(A4))``.
    """
    r, alpha, a, b = np.exp(log_params)
    xv = d.x_vals
    n = d.weights.sum()
    # Terms of x alone, summed with a weight per distinct x.
    a12_x = special.gammaln(r + xv) - special.gammaln(r) + special.gammaln(b + xv) - special.gammaln(a + b + xv) - special.gammaln(b) + special.gammaln(a + b)
    log_b_x = np.log(b + np.maximum(xv, 1) - 1)
    l_T = np.log(alpha + d.T_vals)
    l_tx = np.log(alpha + d.tx_vals)
    inv_T = 1.0 / (alpha + d.T_vals)
    inv_tx = 1.0 / (alpha + d.tx_vals)
    # x = 0: ll = r log(alpha) - r log(alpha + T)
    ll_sum = float(d.w_x @ a12_x) + n * r * np.log(alpha) - r * float(d.zero_w_T @ l_T)
    d_r = float(d.w_x @ (special.digamma(r + xv) - special.digamma(r))) + n * np.log(alpha) - float(d.zero_w_T @ l_T)
    d_alpha = n * r / alpha - r * float(d.zero_w_T @ inv_T)
    d_a = float(d.w_x @ (special.digamma(a + b) - special.digamma(a + b + xv)))
    d_b = float(d.w_x @ (special.digamma(b + xv) - special.digamma(a + b + xv) - special.digamma(b) + special.digamma(a + b)))
    # x > 0: both branches, mixed per row.
    w = d.rep_w
    rx = r + d.rep_x
    lT = l_T[d.rep_T_idx]
    ltx = l_tx[d.rep_tx_idx]
    lb = log_b_x[d.rep_x_idx]
    u = -rx * lT
    diff = np.log(a) - lb - rx * ltx - u  # A4 - A3
    # log(1 + e^diff) and the logistic weight e^diff / (1 + e^diff) from one exp.
    e = np.exp(-np.abs(diff))
    softplus = np.maximum(diff, 0.0) + np.log1p(e)
    pv = np.where(diff >= 0, 1.0, e) / (1.0 + e)  # weight of the "dropped out after the last purchase" branch
    wpv = w * pv
    wpu = w - wpv
    ll_sum += float(w @ u) + float(w @ softplus)
    d_r += -float(wpu @ lT) - float(wpv @ ltx)
    d_alpha += -float(np.bincount(d.rep_T_idx, weights=wpu * rx, minlength=len(inv_T)) @ inv_T)
    d_alpha += -float(np.bincount(d.rep_tx_idx, weights=wpv * rx, minlength=len(inv_tx)) @ inv_tx)
    d_a += float(wpv.sum()) / a
    d_b += -float(np.bincount(d.rep_x_idx, weights=wpv, minlength=len(xv)) @ np.exp(-log_b_x))
    params = np.array([r, alpha, a, b])
    value = -ll_sum / n + penalizer * float(np.sum(params**2))
    grad_natural = -np.array([d_r, d_alpha, d_a, d_b]) / n
    return value, grad_natural * params + 2 * penalizer * params**2


def _hessian(objective, log_params: np.ndarray) -> np.ndarray:
    """Hessian of ``objective`` by central differences of its analytic gradient."""
    k = len(log_params)
    h = np.empty((k, k))
    for i in range(k):
        step = np.zeros(k)
        step[i] = HESSIAN_STEP
        h[i] = (objective(log_params + step)[1] - objective(log_params - step)[1]) / (2 * HESSIAN_STEP)
    return (h + h.T) / 2


def thinned(weights: np.ndarray) -> np.ndarray | None:
    """Weights of a fixed-seed random sample of about ``WARM_SAMPLE_CUSTOMERS`` customers
    (each customer kept independently), or None when the data is small enough to fit
    directly (under ``WARM_START_CUSTOMERS``)."""
    w = np.asarray(weights, float)
    n = w.sum()
    if n < WARM_START_CUSTOMERS:
        return None
    return np.random.default_rng(WARM_SEED).binomial(np.rint(w).astype(np.int64), WARM_SAMPLE_CUSTOMERS / n).astype(float)


def _warm_start(objective, start: np.ndarray, tol: float) -> tuple[np.ndarray, dict]:
    """Starting point and BFGS options from a fit of ``objective`` (on a sample of customers).

    The sample's optimum is within sampling error of the full one and BFGS's inverse
    Hessian there is a good curvature estimate for the full objective (both are means
    per customer), so the full fit then needs a handful of evaluations instead of
    twenty or more. The full fit still converges to its own tolerance.
    """
    from scipy.optimize import minimize  # imported when a model is fitted: `clvx rfm` never loads the optimiser

    pre = minimize(objective, start, jac=True, method="BFGS", tol=tol)
    if not (pre.success and np.all(np.isfinite(pre.x))):
        return start, {}
    hess_inv = (pre.hess_inv + pre.hess_inv.T) / 2
    try:
        np.linalg.cholesky(hess_inv)
    except np.linalg.LinAlgError:
        return pre.x, {}
    return pre.x, {"hess_inv0": hess_inv}


# One BLAS thread: the objectives are elementwise numpy and dot products of vectors, which
# BLAS threads do not speed up; each dot woke OpenBLAS's pool, whose threads then spin for a
# while, and on a busy machine they took the CPU from the fit (3M lines, one other process
# running: 1.4 -> 0.4 s of CPU). A vector's dot summed by one thread also gives the same bits
# on any machine, whatever its number of CPUs.
@threads.limited(blas=1)
def _optimise(
    objective, start: np.ndarray, n: float, tol: float, warm=None, standard_errors: bool = True, maxiter: int | None = None,
) -> tuple[np.ndarray, bool, str, tuple[float, ...], bool | None]:
    """BFGS as lifetimes runs it (scipy's default method, same tolerance), plus standard errors.

    ``warm``, the same objective on a sample of customers, is fitted first to start
    from (see :func:`_warm_start`). Standard errors follow lifetimes: params^2 *
    inverse Hessian of the mean objective in log-parameters / number of customers
    (the delta method). The Hessian costs two gradients per parameter; without
    ``standard_errors`` it is skipped and the errors are NaN. Also returns whether the
    Hessian is positive definite (None when skipped); when it is not, the point is no
    proper maximum and the errors are NaN.
    """
    from scipy.optimize import minimize  # imported when a model is fitted: `clvx rfm` never loads the optimiser

    with np.errstate(all="ignore"):
        options: dict = {}
        if warm is not None:
            start, options = _warm_start(warm, start, tol)
        if maxiter is not None:
            options = {**options, "maxiter": maxiter}
        res = minimize(objective, start, jac=True, method="BFGS", tol=tol, options=options)
        params = np.exp(res.x)
        ses = tuple(float("nan") for _ in params)
        definite = None
        if standard_errors:
            hess = _hessian(objective, res.x)
            definite = positive_definite(hess)
            if definite:
                cov = np.linalg.inv(hess) / n
                ses = tuple(float(s) for s in np.sqrt(np.diag(cov)) * params)
    ok = bool(res.success) and bool(np.all(np.isfinite(res.x)))
    return res.x, ok, str(res.message), ses, definite


def _maximise(
    objective, build, columns: tuple[np.ndarray, ...], weights: np.ndarray, n_params: int, *,
    penalizer: float, initial_log_params: np.ndarray | None, tol: float, standard_errors: bool, maxiter: int | None = None,
) -> tuple[np.ndarray, bool, str, tuple[float, ...], bool | None]:
    """Minimise ``objective(log_params, build(*columns, weights), penalizer)`` with :func:`_optimise`.

    On large data (see :func:`thinned`) the same objective on a sample of customers,
    built the same way, gives the warm start. Starts from lifetimes' default point
    unless ``initial_log_params`` are given.
    """
    d = build(*columns, weights)
    start = np.full(n_params, LIFETIMES_DEFAULT_START) if initial_log_params is None else np.asarray(initial_log_params, float)
    warm = None
    if (w := thinned(weights)) is not None:
        keep = w > 0
        sample = build(*(np.asarray(c)[keep] for c in columns), w[keep])
        warm = lambda p: objective(p, sample, penalizer)  # noqa: E731
    return _optimise(lambda p: objective(p, d, penalizer), start, d.weights.sum(), tol, warm, standard_errors, maxiter)


def fit_bgnbd(
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    weights: np.ndarray,
    *,
    penalizer: float = 0.0,
    initial_log_params: np.ndarray | None = None,
    tol: float = 1e-7,
    standard_errors: bool = True,
) -> Optimum:
    """Maximum-likelihood BG/NBD on compressed rows; ``params`` are ``(r, alpha, a, b)``, alpha in input time units."""
    return _fit_on_rescaled_time(bgnbd_objective, BGNBDData, (1,), (frequency, recency, T), weights, penalizer=penalizer,
                                 initial_log_params=initial_log_params, tol=tol, standard_errors=standard_errors)


def _fit_on_rescaled_time(objective, data, time_scaled: tuple[int, ...], columns: tuple[np.ndarray, ...], weights: np.ndarray,
                          **options) -> Optimum:
    """:func:`_maximise` on lifetimes' rescaled time (largest T = 1), the parameters in ``time_scaled``
    (alpha, and Pareto/NBD's beta) and their standard errors brought back to input time units."""
    scale = 1.0 / float(np.max(columns[2]))  # the full data's, for the warm-start sample too
    x, ok, message, ses, definite = _maximise(objective, lambda *c: data.build(*c, scale=scale), columns, weights, 4, **options)
    params, se = np.exp(x), np.array(ses, dtype=float)
    params[list(time_scaled)] /= scale
    se[list(time_scaled)] /= scale
    return Optimum(tuple(float(v) for v in params), tuple(float(v) for v in se), ok, message, definite)



# --------------------------------------------------------------------------- Gamma-Gamma


@dataclass(frozen=True)
class GammaGammaData:
    x: np.ndarray
    log_m: np.ndarray
    m: np.ndarray
    weights: np.ndarray
    x_vals: np.ndarray
    x_idx: np.ndarray

    @classmethod
    def build(cls, frequency: np.ndarray, monetary_value: np.ndarray, weights: np.ndarray) -> GammaGammaData:
        x_vals, x_idx = factorize(frequency)
        m = np.asarray(monetary_value, float)
        return cls(np.asarray(frequency, float), np.log(m), m, np.asarray(weights, float), x_vals.astype(float), x_idx)


def gamma_gamma_objective(log_params: np.ndarray, d: GammaGammaData, penalizer: float = 0.0) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood of mean spends (Hardie's note 025, eq. 1a) and its gradient in log-parameters."""
    p, q, v = np.exp(log_params)
    xv = d.x_vals
    x = d.x
    w = d.weights
    n = w.sum()
    px = p * x
    l_xmv = np.log(x * d.m + v)
    ll = (
        (special.gammaln(p * xv + q) - special.gammaln(p * xv) + p * xv * np.log(xv))[d.x_idx]
        - special.gammaln(q) + q * np.log(v) + (px - 1) * d.log_m - (px + q) * l_xmv
    )
    params = np.array([p, q, v])
    value = -float(np.dot(w, ll)) / n + penalizer * float(np.sum(params**2))
    psi_pxq = special.digamma(p * xv + q)
    d_p = (xv * (psi_pxq - special.digamma(p * xv) + np.log(xv)))[d.x_idx] + x * d.log_m - x * l_xmv
    d_q = psi_pxq[d.x_idx] - special.digamma(q) + np.log(v) - l_xmv
    d_v = q / v - (px + q) / (x * d.m + v)
    grad_natural = -np.array([np.dot(w, d_p), np.dot(w, d_q), np.dot(w, d_v)]) / n
    return value, grad_natural * params + 2 * penalizer * params**2


def fit_gamma_gamma(
    frequency: np.ndarray,
    monetary_value: np.ndarray,
    weights: np.ndarray,
    *,
    penalizer: float = 0.0,
    initial_log_params: np.ndarray | None = None,
    tol: float = 1e-7,
    standard_errors: bool = True,
) -> Optimum:
    """Maximum-likelihood Gamma-Gamma on repeat customers with positive spend; ``params`` are ``(p, q, v)``."""
    x, ok, message, ses, definite = _maximise(
        gamma_gamma_objective, GammaGammaData.build, (frequency, monetary_value), weights, 3,
        penalizer=penalizer, initial_log_params=initial_log_params, tol=tol, standard_errors=standard_errors,
    )
    return Optimum(tuple(float(v) for v in np.exp(x)), ses, ok, message, definite)


# --------------------------------------------------------------------------- rows on rescaled time


@dataclass(frozen=True)
class RowData:
    """Compressed (frequency, recency, T) rows with weights on lifetimes' rescaled time (largest T = 1).

    Terms of x alone are computed once per distinct frequency (``x_vals``) and gathered
    with ``x_idx``.
    """

    x: np.ndarray
    tx: np.ndarray
    T: np.ndarray
    weights: np.ndarray
    x_vals: np.ndarray
    x_idx: np.ndarray
    scale: float

    @cached_property
    def pareto_grid(self) -> ParetoGrid:
        return ParetoGrid.build(self.x_idx, len(self.x_vals), self.tx, self.T)

    @cached_property
    def pareto_cells(self) -> tuple[np.ndarray, np.ndarray]:
        """Each row's (frequency, t_x) and (frequency, T) cells on :attr:`pareto_grid`."""
        grid = self.pareto_grid
        return grid.cell(self.x_idx, grid.start), grid.cell(self.x_idx, grid.stop)

    @cached_property
    def weights_per_x(self) -> np.ndarray:
        return np.bincount(self.x_idx, weights=self.weights, minlength=len(self.x_vals))

    @classmethod
    def build(cls, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray, weights: np.ndarray, *, scale: float) -> RowData:
        x_vals, x_idx = factorize(np.asarray(frequency, float))
        return cls(np.asarray(frequency, float), np.asarray(recency, float) * scale, np.asarray(T, float) * scale,
                   np.asarray(weights, float), x_vals, x_idx.astype(np.int32), scale)


# --------------------------------------------------------------------------- MBG/NBD


def mbgnbd_log_likelihood(params: tuple[float, ...], frequency: np.ndarray, recency: np.ndarray, T: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Total MBG/NBD log-likelihood (Batislam, Denizel & Filiztekin 2007, eq. 4).

    ``L = B(a, b+x+1)/B(a, b) Gamma(r+x) alpha^r / Gamma(r) [(alpha+T)^-(r+x) + a/(b+x) (alpha+t_x)^-(r+x)]``:
    as BG/NBD, except that a customer may also leave right after the first purchase, so the
    second branch is there for x = 0 too.
    """
    r, alpha, a, b = params
    x = np.asarray(frequency, dtype=float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = special.betaln(a, b + x + 1) - special.betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    a4 = np.log(a) - np.log(b + x) - (r + x) * np.log(alpha + recency)
    return float(np.sum(w * (a1 + a2 + np.logaddexp(a3, a4))))


def mbgnbd_objective(log_params: np.ndarray, d: RowData, penalizer: float = 0.0) -> tuple[float, np.ndarray]:
    """Mean negative MBG/NBD log-likelihood (eq. 4) on rescaled time and its analytic gradient in log-parameters."""
    r, alpha, a, b = np.exp(log_params)
    xv = d.x_vals
    w = d.weights
    n = w.sum()
    ix = d.x_idx
    x = d.x
    rx = r + x
    l_T = np.log(alpha + d.T)
    l_tx = np.log(alpha + d.tx)
    lbx = np.log(b + xv)
    u = -rx * l_T
    v = np.log(a) - lbx[ix] - rx * l_tx
    ll_mix = np.logaddexp(u, v)
    pv = np.exp(v - ll_mix)  # weight of "left after the last purchase"
    pu = 1.0 - pv
    w_x = np.bincount(ix, weights=w, minlength=len(xv))
    a12_x = (special.gammaln(r + xv) - special.gammaln(r) + special.gammaln(a + b) + special.gammaln(b + xv + 1) - special.gammaln(b)
             - special.gammaln(a + b + xv + 1))
    ll_sum = float(w_x @ a12_x) + n * r * np.log(alpha) + float(w @ ll_mix)
    d_r = float(w_x @ (special.digamma(r + xv) - special.digamma(r))) + n * np.log(alpha) - float(w @ (pu * l_T + pv * l_tx))
    d_alpha = n * r / alpha - float(w @ (rx * (pu / (alpha + d.T) + pv / (alpha + d.tx))))
    d_a = float(w_x @ (special.digamma(a + b) - special.digamma(a + b + xv + 1))) + float(w @ pv) / a
    d_b = float(w_x @ (special.digamma(a + b) + special.digamma(b + xv + 1) - special.digamma(b) - special.digamma(a + b + xv + 1)))
    d_b -= float(np.bincount(ix, weights=w * pv, minlength=len(xv)) @ (1.0 / (b + xv)))
    params = np.array([r, alpha, a, b])
    value = -ll_sum / n + penalizer * float(np.sum(params**2))
    grad_natural = -np.array([d_r, d_alpha, d_a, d_b]) / n
    return value, grad_natural * params + 2 * penalizer * params**2


def fit_mbgnbd(
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    weights: np.ndarray,
    *,
    penalizer: float = 0.0,
    initial_log_params: np.ndarray | None = None,
    tol: float = 1e-7,
    standard_errors: bool = True,
) -> Optimum:
    """Maximum-likelihood MBG/NBD on compressed rows; ``params`` are ``(r, alpha, a, b)``, alpha in input time units."""
    return _fit_on_rescaled_time(mbgnbd_objective, RowData, (1,), (frequency, recency, T), weights, penalizer=penalizer,
                                 initial_log_params=initial_log_params, tol=tol, standard_errors=standard_errors)


# --------------------------------------------------------------------------- Pareto/NBD

GRADIENT_STEP = 1e-6  # central differences of the Pareto/NBD objective, in log-parameters
# BFGS iterations for Pareto/NBD: an interior optimum takes 20-60; beyond this the fit is walking
# along a ridge to a boundary (no dropout: s / beta -> 0) and stops there, unconverged.
PARETO_MAX_ITERATIONS = 150
# Gauss-Legendre nodes per piece of the A_0 integral (a piece spans two neighbouring values of
# t_x or T); pieces are short and the integrand nearly a power there, so 8 nodes give about 1e-13.
PARETO_NODES = 8
# Above this many (distinct frequency x time-grid piece) cells, the piecewise integral costs more
# than it saves: the objective falls back to the closed form with a central-difference gradient.
PARETO_MAX_CELLS = 4_000_000
PIECES_PER_BLOCK = 250_000  # pieces integrated at once: bounds the temporaries to some 30 MB each
_EMPTY = -1e300  # log of an empty sum, kept finite
WIDE_PIECE = np.log(4 / 3)  # pieces over which alpha + tau grows more get twice the nodes
_LEGENDRE = np.polynomial.legendre.leggauss(PARETO_NODES)
_GL_NODES, _GL_WEIGHTS = 0.5 * (_LEGENDRE[0] + 1.0), 0.5 * _LEGENDRE[1]  # on [0, 1]
_LEGENDRE = np.polynomial.legendre.leggauss(2 * PARETO_NODES)
_GL_WIDE_NODES, _GL_WIDE_WEIGHTS = 0.5 * (_LEGENDRE[0] + 1.0), 0.5 * _LEGENDRE[1]


def refined(Y: np.ndarray, ratio: float = 4 / 3, floor: float = 1e-6) -> np.ndarray:
    """``Y`` with points added wherever one time is more than ``ratio`` times the one before it,
    down to ``floor`` x the largest time: then alpha + tau grows by at most ``ratio`` over any
    piece, whatever alpha, and a few Gauss-Legendre nodes integrate each piece to rounding."""
    if len(Y) == 0 or Y[-1] <= 0:
        return Y
    low = floor * Y[-1]
    extra = []
    for i in np.flatnonzero((Y[1:] > ratio * Y[:-1]) & (Y[1:] > low)):
        lo, hi = Y[i], Y[i + 1]
        start = max(lo, low)
        steps = int(np.ceil(np.log(hi / start) / np.log(ratio)))
        points = start * ratio ** np.arange(0 if lo < low else 1, steps)
        extra.append(points[(points > lo * (1 + 1e-9)) & (points < hi * (1 - 1e-9))])
    return np.unique(np.concatenate([Y, *extra])) if extra else Y


@dataclass(frozen=True)
class ParetoGrid:
    """Where each row's (t_x, T) falls on the grid of every distinct t_x and T value.

    ``Y`` holds the sorted distinct times; a row's integral over [t_x, T] is the sum of the
    grid pieces [Y_i, Y_i+1] from ``start`` up to ``stop`` (indices into ``Y``). Only the
    pieces some row of that frequency covers are computed: ``piece_x`` and ``piece_i`` list
    them (index of the distinct frequency, index of the piece's left end).
    """

    Y: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    piece_x: np.ndarray
    piece_i: np.ndarray

    @classmethod
    def build(cls, x_idx: np.ndarray, n_x: int, tx: np.ndarray, T: np.ndarray) -> ParetoGrid:
        Y = refined(np.unique(np.concatenate([tx, T])))
        start, stop = np.searchsorted(Y, tx), np.searchsorted(Y, T)
        lo = np.full(n_x, len(Y))
        hi = np.zeros(n_x, dtype=np.int64)
        np.minimum.at(lo, x_idx, start)
        np.maximum.at(hi, x_idx, stop)
        counts = np.maximum(hi - lo, 0)
        piece_x = np.repeat(np.arange(n_x), counts)
        piece_i = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(lo, counts)
        return cls(Y, start, stop, piece_x, piece_i)

    def cell(self, x_idx: np.ndarray, time_idx: np.ndarray) -> np.ndarray:
        """Flat index into a (distinct frequency x grid time) array."""
        return x_idx.astype(np.int64) * len(self.Y) + time_idx


def _pareto_row_log_likelihood(params: tuple[float, ...], x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    from clv.expectations import pareto_log_a0

    r, alpha, s, beta = params
    first = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    stay = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    leave = np.log(s) - np.log(r + s + x) + pareto_log_a0(params, x, tx, T)
    return first + np.logaddexp(stay, leave)


def pareto_log_likelihood(params: tuple[float, ...], frequency: np.ndarray, recency: np.ndarray, T: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Total Pareto/NBD log-likelihood (Fader & Hardie, note 009, eq. 18; Schmittlein, Morrison & Colombo 1987).

    ``L = Gamma(r+x) alpha^r beta^s / Gamma(r) [(alpha+T)^-(r+x) (beta+T)^-s + s/(r+s+x) A_0]``,
    in logs, with A_0 from :func:`clv.expectations.pareto_log_a0`.
    """
    x = np.asarray(frequency, dtype=float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    with np.errstate(all="ignore"):
        return float(np.sum(w * _pareto_row_log_likelihood(params, x, np.asarray(recency, float), np.asarray(T, float))))


def _pareto_value(log_params: np.ndarray, d: RowData, penalizer: float) -> float:
    params = np.exp(log_params)
    with np.errstate(all="ignore"):
        ll = float(d.weights @ _pareto_row_log_likelihood(tuple(params), d.x, d.tx, d.T))
    value = -ll / d.weights.sum() + penalizer * float(np.sum(params**2))
    return value if np.isfinite(value) else np.inf


def _suffix_log_sums(log_pieces: np.ndarray) -> np.ndarray:
    """log sum_{j >= i} exp(log_pieces[:, j]) for every grid point i, -inf at the last one."""
    tail = np.logaddexp.accumulate(log_pieces[:, ::-1], axis=1)[:, ::-1]
    return np.concatenate([tail, np.full((len(log_pieces), 1), -np.inf)], axis=1)


def pareto_integral_pieces(params: tuple[float, ...], x: np.ndarray, y0: np.ndarray, y1: np.ndarray, *,
                           derivatives: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The integral behind A_0 over pieces [y0, y1] of time, with its parameter derivatives.

    ``s/(r+s+x) A_0 = s I`` with ``I = int_{t_x}^T (alpha+tau)^-(r+x) (beta+tau)^-(s+1) dtau``: the
    chance of leaving at tau, integrated over the gamma mixtures (the step before eq. 18 of Fader &
    Hardie's note 009, whose closed form is the 2F1 of A_0). On each piece the substitution
    v = (alpha+tau)^-k, k matched to the integrand's log-slope at the piece's middle, leaves a
    nearly constant factor for Gauss-Legendre; the few pieces over which alpha + tau grows by
    more than a third (the first days when alpha is a fraction of a day) get twice the nodes.
    Returns ``log P`` (each piece's integral) and ``mu`` (4 x pieces: the piece's averages of
    the integrand's log-derivatives in r, alpha, s, beta, so that dP/dtheta = P mu).
    """
    if len(x) > PIECES_PER_BLOCK:
        blocks = [pareto_integral_pieces(params, x[i:i + PIECES_PER_BLOCK], y0[i:i + PIECES_PER_BLOCK], y1[i:i + PIECES_PER_BLOCK],
                                         derivatives=derivatives) for i in range(0, len(x), PIECES_PER_BLOCK)]
        return np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks], axis=1)
    alpha = params[1]
    wide = np.log(alpha + y1) - np.log(alpha + y0) > WIDE_PIECE
    if not wide.any():
        return _pieces(params, x, y0, y1, _GL_NODES, _GL_WEIGHTS, derivatives)
    log_p, mu = np.empty(len(x)), np.empty((4, len(x) if derivatives else 0))
    for part, (nodes, weights) in ((~wide, (_GL_NODES, _GL_WEIGHTS)), (wide, (_GL_WIDE_NODES, _GL_WIDE_WEIGHTS))):
        log_p[part], m = _pieces(params, x[part], y0[part], y1[part], nodes, weights, derivatives)
        if derivatives:
            mu[:, part] = m
    return log_p, mu


def _pieces(params: tuple[float, ...], x: np.ndarray, y0: np.ndarray, y1: np.ndarray, nodes: np.ndarray, weights: np.ndarray,
            derivatives: bool) -> tuple[np.ndarray, np.ndarray]:
    r, alpha, s, beta = params
    rx, y0, y1 = (r + x)[:, None], y0[:, None], y1[:, None]  # piece x node
    mid = 0.5 * (y0 + y1)
    k = rx - 1.0 + (s + 1.0) * (alpha + mid) / (beta + mid)
    k = np.where(np.abs(k) < 1e-6, np.where(k < 0, -1e-6, 1e-6), k)
    log_a0 = np.log(alpha + y0)
    D = -np.expm1(-k * (np.log(alpha + y1) - log_a0))
    log_alpha_tau = log_a0 - np.log1p(-nodes * D) / k
    tau = np.exp(log_alpha_tau) - alpha
    log_beta_tau = np.log(beta + tau)
    log_g = (k + 1.0 - rx) * log_alpha_tau - (s + 1.0) * log_beta_tau
    top = log_g.max(axis=1, keepdims=True)
    g = weights * np.exp(log_g - top)
    total = g.sum(axis=1)
    log_p = (-k * log_a0 + np.log(D / k) + top)[:, 0] + np.log(total)
    g /= total[:, None]
    if not derivatives:
        return log_p, np.empty((4, 0))
    mu = np.stack([
        -(g * log_alpha_tau).sum(axis=1),
        -rx[:, 0] * (g * np.exp(-log_alpha_tau)).sum(axis=1),
        -(g * log_beta_tau).sum(axis=1),
        -(s + 1.0) * (g / (beta + tau)).sum(axis=1),
    ])
    return log_p, mu


def _suffix_sums(grid: ParetoGrid, n_x: int, values: np.ndarray) -> np.ndarray:
    """log of the sum of the pieces' values from each grid point on, per distinct frequency (empty: -inf)."""
    full = np.full((n_x, len(grid.Y)), -np.inf)
    full[grid.piece_x, grid.piece_i] = values
    return np.logaddexp.accumulate(full[:, ::-1], axis=1)[:, ::-1]


def pareto_log_a0(params: tuple[float, ...], frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """log A_0 of note 009 (eqs. 19-20) per row, by the piecewise integral of
    :func:`pareto_integral_pieces` (A_0 = (r+s+x) I), or by the 2F1 closed form of
    :func:`clv.expectations.pareto_log_a0` when the time grid is too fine. -inf where t_x = T."""
    return pareto_log_a0_of(frequency, recency, T)(params)


def pareto_log_a0_of(frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> Callable[[Sequence[float]], np.ndarray]:
    """:func:`pareto_log_a0` on fixed rows as a function of the parameters: the time grid, which
    depends on the rows only, is built once for any number of parameter vectors (draws)."""
    from clv.expectations import pareto_log_a0 as closed_form

    x = np.asarray(frequency, float)
    x_vals, x_idx = factorize(x)
    grid = ParetoGrid.build(x_idx, len(x_vals), np.asarray(recency, float), np.asarray(T, float))

    def log_a0(params: Sequence[float]) -> np.ndarray:
        if len(grid.piece_x) > PARETO_MAX_CELLS:
            return closed_form(tuple(params), x, recency, T)
        r, _, s, _ = params
        log_p, _ = pareto_integral_pieces(tuple(params), x_vals[grid.piece_x], grid.Y[grid.piece_i], grid.Y[grid.piece_i + 1],
                                          derivatives=False)
        with np.errstate(all="ignore"):
            log_G = np.maximum(_suffix_sums(grid, len(x_vals), log_p), _EMPTY).ravel()
            la, lb = log_G[grid.cell(x_idx, grid.start)], log_G[grid.cell(x_idx, grid.stop)]
            return np.log(r + s + x) + la + np.log(-np.expm1(lb - la))

    return log_a0


def pareto_grid_objective(log_params: np.ndarray, d: RowData, penalizer: float = 0.0) -> tuple[float, np.ndarray]:
    """Mean negative Pareto/NBD log-likelihood (note 009, eq. 18) on rescaled time and its analytic gradient.

    The A_0 term comes from :func:`pareto_integral_pieces`: piece integrals summed from each
    row's t_x to its T (suffix sums in logs, so nothing under- or overflows for large x), and
    the derivatives from the same pieces. Every term of (x, t_x) or (x, T) alone is computed on
    the grid and gathered; only the mixture of staying and leaving is per row. Matches the 2F1
    closed form to about 1e-13.
    """
    r, alpha, s, beta = np.exp(log_params)
    grid = d.pareto_grid
    xv, w = d.x_vals, d.weights
    n = w.sum()
    shape = (len(xv), len(grid.Y))
    log_p, mu = pareto_integral_pieces((r, alpha, s, beta), xv[grid.piece_x], grid.Y[grid.piece_i], grid.Y[grid.piece_i + 1])

    def suffix(values: np.ndarray) -> np.ndarray:
        return _suffix_sums(grid, len(xv), values)

    with np.errstate(all="ignore"):
        log_G = suffix(log_p)
        # the tail average of each log-derivative from each grid point on; 0 past the end
        moments = np.stack([np.nan_to_num(np.exp(suffix(log_p + np.log(np.maximum(m, 0.0))) - log_G)
                                          - np.exp(suffix(log_p + np.log(np.maximum(-m, 0.0))) - log_G)).ravel() for m in mu])
        log_G = np.maximum(log_G, _EMPTY).ravel()  # finite, so that t_x = T gives log_rho = 0, not nan
        fa, fb = d.pareto_cells
        la = log_G[fa]
        log_rho = log_G[fb] - la
        gap = -np.expm1(log_rho)  # 1 - rho; 0 where t_x = T, where nobody can have left
        rx = (r + xv)[:, None]
        l_aY, l_bY = np.log(alpha + grid.Y), np.log(beta + grid.Y)
        stay_cell = (-rx * l_aY - s * l_bY).ravel()  # eq. 18's branch 'still alive at T', per (x, T)
        stay = stay_cell[fb]
        z = np.log(s) + la + np.log(gap) - stay  # log(leave / stay)
        log_mix = np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))  # log(1 + leave / stay), stable both ways
        p_leave = np.exp(z - log_mix)  # 0 where t_x = T (z = -inf)
        gap[gap == 0.0] = 1.0
    # d log I / d theta = (m_a - rho m_b) / (1 - rho): summed with weights w p_leave, per cell
    c = w * p_leave / gap
    at_a = np.bincount(fa, weights=c, minlength=log_G.size)
    at_b = np.bincount(fb, weights=c * np.exp(log_rho), minlength=log_G.size)
    R = moments @ (at_a - at_b)
    w_x = d.weights_per_x
    ws_cell = np.bincount(fb, weights=w * (1.0 - p_leave), minlength=log_G.size).reshape(shape)  # weight of staying per (x, T)
    w_cell = np.bincount(fb, weights=w, minlength=log_G.size)
    ll = (float(w_x @ (special.gammaln(r + xv) - special.gammaln(r))) + n * (r * np.log(alpha) + s * np.log(beta))
          + float(w_cell @ stay_cell) + float(w @ log_mix))
    w_leave = float(w @ p_leave)
    d_r = float(w_x @ (special.digamma(r + xv) - special.digamma(r))) + n * np.log(alpha) - float((ws_cell @ l_aY).sum()) + R[0]
    d_alpha = n * r / alpha - float(((ws_cell @ (1.0 / (alpha + grid.Y))) * rx[:, 0]).sum()) + R[1]
    d_s = n * np.log(beta) - float((ws_cell @ l_bY).sum()) + w_leave / s + R[2]
    d_beta = n * s / beta - s * float((ws_cell @ (1.0 / (beta + grid.Y))).sum()) + R[3]
    params = np.array([r, alpha, s, beta])
    value = -ll / n + penalizer * float(np.sum(params**2))
    grad = -np.array([d_r, d_alpha, d_s, d_beta]) / n * params + 2 * penalizer * params**2
    if not (np.isfinite(value) and np.all(np.isfinite(grad))):
        return np.inf, np.zeros(4)
    return value, grad


def pareto_objective(log_params: np.ndarray, d: RowData, penalizer: float = 0.0) -> tuple[float, np.ndarray]:
    """Mean negative Pareto/NBD log-likelihood on rescaled time and its gradient.

    On a time grid of modest size (every clvx summary: t_x and T are whole days, or weeks or
    months of them) the piecewise integral of :func:`pareto_grid_objective` gives both in one
    pass. Otherwise the closed form's 2F1 terms, which have no convenient derivatives, are
    differenced centrally in log-parameters (accurate to about 1e-10, well inside the
    optimiser's tolerance, but nine evaluations per gradient).
    """
    if len(d.pareto_grid.piece_x) <= PARETO_MAX_CELLS:
        return pareto_grid_objective(log_params, d, penalizer)
    value = _pareto_value(log_params, d, penalizer)
    grad = np.empty(len(log_params))
    for i in range(len(log_params)):
        step = np.zeros(len(log_params))
        step[i] = GRADIENT_STEP
        grad[i] = (_pareto_value(log_params + step, d, penalizer) - _pareto_value(log_params - step, d, penalizer)) / (2 * GRADIENT_STEP)
    if not np.all(np.isfinite(grad)):
        grad = np.zeros(len(log_params)) if not np.isfinite(value) else np.nan_to_num(grad)
    return value, grad


def fit_pareto(
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    weights: np.ndarray,
    *,
    penalizer: float = 0.0,
    initial_log_params: np.ndarray | None = None,
    tol: float = 1e-7,
    standard_errors: bool = True,
) -> Optimum:
    """Maximum-likelihood Pareto/NBD on compressed rows; ``params`` are ``(r, alpha, s, beta)``, alpha and beta in input time."""
    return _fit_on_rescaled_time(pareto_objective, RowData, (1, 3), (frequency, recency, T), weights, penalizer=penalizer,
                                 initial_log_params=initial_log_params, tol=tol, standard_errors=standard_errors,
                                 maxiter=PARETO_MAX_ITERATIONS)


def standard_errors_at(objective, build, params: tuple[float, ...], columns: tuple[np.ndarray, ...], weights: np.ndarray,
                       time_scaled: tuple[int, ...]) -> tuple[tuple[float, ...], bool]:
    """Standard errors (delta method) and whether the Hessian is positive definite, at a given optimum.

    For fits whose optimiser reports no Hessian (lifetimes' Pareto/NBD runs Nelder-Mead).
    """
    d = build(*columns, weights)
    info = log_information(objective, d, params, time_scaled)
    if not positive_definite(info):
        return tuple(float("nan") for _ in params), False
    se = np.sqrt(np.diag(np.linalg.inv(info))) * np.asarray(params, float)
    return tuple(float(v) for v in se), True


def log_information(objective, data, params: Sequence[float], time_scaled: tuple[int, ...]) -> np.ndarray:
    """Minus the Hessian of the total log-likelihood in log-parameters at ``params`` (input time),
    by central differences of the fit objective's analytic gradient on ``data``.

    The log-parameters in ``time_scaled`` are shifted by log(data.scale) to the objective's
    rescaled time, a constant that leaves the curvature as it is.
    """
    theta = np.log(np.asarray(params, float))
    theta[list(time_scaled)] += np.log(data.scale)
    with np.errstate(all="ignore"):
        return _hessian(lambda p: objective(p, data, 0.0), theta) * float(np.sum(data.weights))
