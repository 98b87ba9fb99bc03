"""Per-customer prediction intervals: the predictive distribution of future purchases.

For a customer with history (x, t_x, T), the count X(t) of repeat purchase periods in
(T, T + t] has, under each of the three counting models, a distribution that factors
into P(alive | x, t_x, T) times the distribution of a customer known to be alive at T:

* the purchase rate's posterior given alive is lambda ~ Gamma(r + x, alpha + T) under
  every model (Fader, Hardie & Lee 2005, sec. 3; Fader & Hardie, note 028, eq. 10), so the
  purchases a live customer would make in t periods are negative binomial N(t);
* BG/NBD: after each purchase the customer drops out with probability p, whose posterior
  given alive is Beta(a, b + x); X(t) >= k needs k purchases and survival of the first
  k - 1 coin flips, so P(X(t) >= k | alive) = P(N(t) >= k) E[(1 - p)^(k - 1)]
  = P(N(t) >= k) B(a, b + x + k - 1) / B(a, b + x): count = min(Poisson, Geometric);
* MBG/NBD (Batislam, Denizel & Filiztekin 2007): the customer may also drop at time 0,
  so being alive at T means surviving x + 1 flips and p | alive ~ Beta(a, b + x + 1);
  the future is as BG/NBD's;
* Pareto/NBD (Schmittlein, Morrison & Colombo 1987): the remaining lifetime is Exp(mu)
  with mu | alive ~ Gamma(s, beta + T), and X(t) = N(min(t, lifetime)); with A_k the
  time of the k-th future purchase, P(X(t) >= k | alive) = E[1{A_k <= t} ((beta + T) /
  (beta + T + A_k))^s], integrated over A_k by Gauss-Legendre quadrature (note 028 gives
  the same quantity as a sum of Gauss hypergeometric terms).

These survival functions are closed forms (BG/NBD, MBG/NBD) or a one-dimensional
integral (Pareto/NBD); nothing is simulated, so an interval is the same on every run.
The mean of each distribution, sum over k >= 1 of P(X >= k), is the model's conditional
expectation (FHL 2005 eq. 10 and its analogues); the tests hold it to that.

Parameter uncertainty: the parameters are drawn from their sampling distribution, a
normal on the log scale with the inverse observed information as covariance (the
Hessian of the total log-likelihood in log-parameters, by central differences), and the
predictive distribution is the mixture over the draws. Where the optimum sits on a
boundary (the Hessian is not positive definite, or a parameter is poorly identified:
its standard error on the log scale above 1), the normal is no description of the
uncertainty, and the draws are refits on bootstrap resamples of the customers instead.

Everything is computed once per distinct (x, T) pair (the survival given alive does
not depend on t_x) and once per distinct (x, t_x, T) row (P(alive)), then joined back.
The Pareto/NBD quadrature runs for all draws at once, as matrix products over the pairs that
share a T (:func:`pareto_survival_blocks`), and its P(alive) integrals share one time grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from clv import expectations, likelihood
from clv.errors import InputError, option
from clv.lazy import lazy_module

special = lazy_module("scipy.special")  # gammaln, ndtri (the standard normal quantile, without loading scipy.stats: a second of start-up)

DEFAULT_DRAWS = 32  # parameter draws in the mixture (covariance draws are cheap; each costs one table)
BOOTSTRAP_REFITS = 24  # refits on resampled customers when the optimum is on a boundary
MAX_LOG_SD = 1.0  # a log-parameter standard error above this: poorly identified, no normal approximation
HESSIAN_LOG_STEP = 1e-4
TAIL = 1e-6  # tables run until P(X >= k) is below this for every draw (the mass they leave out)
QUADRATURE_NODES = 48
INTERVAL_COLUMNS = ("purchases_low", "purchases_high", "clv_low", "clv_high")  # what an interval adds to the scores
MAX_COUNT = 1_000_000  # a safety cap on the table length per customer
LOG_UNDERFLOW = -700.0  # exp() of less is below the smallest normal double


# --------------------------------------------------------------------------- survival given alive


def _table(shape: np.ndarray, q: np.ndarray, b_post: np.ndarray | None, a: float | None, k_max: int) -> np.ndarray:
    """P(X >= k | alive) for k = 1..k_max, rows of (shape, q[, b_post]): the BG/NBD family by recursion in k.

    The negative binomial pmf f(k) = f(k-1) (shape + k - 1) / k q, its survival 1 - cumsum, and
    the Beta factor B(a, b' + k - 1) / B(a, b') = prod_{j<k} (b' + j - 1) / (a + b' + j - 1),
    as running products along k (no special function per cell). Rows whose f(0) = (1 - q)^shape
    would underflow run in logs instead.
    """
    k = np.arange(1, k_max, dtype=float)[None, :]
    shape = np.asarray(shape, float)
    q = np.asarray(q, float)
    with np.errstate(all="ignore"):
        log_f0 = shape * np.log1p(-q)
        ratios = (shape[:, None] + k - 1.0) / k * q[:, None]
        f = np.empty((len(shape), k_max))
        f[:, 0] = np.exp(log_f0)
        f[:, 1:] = f[:, :1] * np.cumprod(ratios, axis=1)
        deep = log_f0 < LOG_UNDERFLOW
        if np.any(deep):  # the mode is far from 0: the same recursion in logs
            log_f = log_f0[deep, None] + np.cumsum(np.log(ratios[deep]), axis=1)
            f[deep, 0] = 0.0
            f[deep, 1:] = np.exp(log_f)
        surv = np.clip(1.0 - np.cumsum(f, axis=1), 0.0, 1.0)  # P(N >= k) for k = 1..k_max
        if b_post is not None and a is not None:
            b_post = np.asarray(b_post, float)
            surv[:, 1:] *= np.cumprod((b_post[:, None] + k - 1.0) / (a + b_post[:, None] + k - 1.0), axis=1)
    return surv


def bgnbd_alive_survival(params: Sequence[float], frequency: np.ndarray, T: np.ndarray, t: float, k_max: int) -> np.ndarray:
    """BG/NBD P(X(t) >= k | alive at T, x, T) for k = 1..k_max, one row per (x, T).

    P(N(t) >= k) B(a, b + x + k - 1) / B(a, b + x) with N(t) ~ NBD(r + x, (alpha + T) / (alpha + T + t))
    (the conditional PMF of FHL 2005's model, derived as in the module docstring).
    """
    r, alpha, a, b = params
    x = np.asarray(frequency, float)
    return _table(r + x, t / (alpha + np.asarray(T, float) + t), b + x, a, k_max)


def mbgnbd_alive_survival(params: Sequence[float], frequency: np.ndarray, T: np.ndarray, t: float, k_max: int) -> np.ndarray:
    """MBG/NBD P(X(t) >= k | alive): as BG/NBD with p | alive ~ Beta(a, b + x + 1) (Batislam et al. 2007)."""
    r, alpha, a, b = params
    x = np.asarray(frequency, float)
    return _table(r + x, t / (alpha + np.asarray(T, float) + t), b + x + 1.0, a, k_max)


def pareto_alive_survival(params: Sequence[float], frequency: np.ndarray, T: np.ndarray, t: float, k_max: int) -> np.ndarray:
    """Pareto/NBD P(X(t) >= k | alive) = int_0^t ((beta+T)/(beta+T+tau))^s dP(N(tau) >= k) (note 028).

    By parts, P(lifetime > t) P(N(t) >= k) + int_0^t Lomax(tau; s, beta + T) P(N(tau) >= k) dtau:
    the last term by Gauss-Legendre quadrature on [0, t].
    """
    r, alpha, s, beta = params
    x = np.asarray(frequency, float)
    a_post = alpha + np.asarray(T, float)
    b_post = beta + np.asarray(T, float)
    shape = r + x
    nodes, weights = np.polynomial.legendre.leggauss(QUADRATURE_NODES)
    tau = (nodes + 1.0) * t / 2.0
    out = np.exp(s * np.log(b_post / (b_post + t)))[:, None] * _table(shape, t / (a_post + t), None, None, k_max)
    for tau_j, w_j in zip(tau, weights * t / 2.0, strict=True):
        density = s / b_post * np.exp((s + 1.0) * np.log(b_post / (b_post + tau_j)))
        out += (w_j * density)[:, None] * _table(shape, tau_j / (a_post + tau_j), None, None, k_max)
    return np.clip(out, 0.0, 1.0)


LOG_SAFE = 600.0  # |log| of a factor of the power-sum form below this: every product of two stays a normal double


def pareto_survival_blocks(values: np.ndarray, frequency: np.ndarray, T: np.ndarray, t: float,
                           sizes: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`pareto_alive_survival` for every draw (rows of ``values``) at once, by the same quadrature.

    Yields, per distinct table length in ``sizes``, the indices of the rows of that length and their
    tables (rows, length, draws). With the end point t as a 49th node of weight P(lifetime > t) and
    the Gauss-Legendre nodes tau_j weighted by W_j = w_j Lomax(tau_j; s, beta + T), the quadrature is
    sum_j W_j P(N(tau_j) >= k) = sum_j W_j - sum_{i<k} m_i, where the mixed negative binomial pmf
    m_i = sum_j W_j f_i(tau_j) = c_i sum_j W_j (1 - q_j)^(r+x) q_j^i, with c_i = Gamma(r+x+i) / (Gamma(r+x) i!)
    and q_j = tau_j / (alpha + T + tau_j). The powers q_j^i depend on T and the draw only, so for the
    histories sharing a T the sums over nodes are one matrix product per draw. Rows whose factors
    leave double range (f_0 or c_i beyond exp(+-LOG_SAFE)) are computed node by node in logs instead.
    """
    values = np.asarray(values, float)
    x, T, sizes = np.asarray(frequency, float), np.asarray(T, float), np.asarray(sizes, np.int64)
    r, alpha, s, beta = (values[:, i][:, None] for i in range(4))  # (draws, 1)
    nodes, weights = np.polynomial.legendre.leggauss(QUADRATURE_NODES)
    tau = np.append((nodes + 1.0) * t / 2.0, t)
    lengths = np.unique(sizes)
    slot = np.searchsorted(lengths, sizes)
    position = np.empty(len(x), np.int64)  # each row's place among the rows of its length
    tables = []
    for j, k_max in enumerate(lengths):
        rows_j = np.flatnonzero(slot == j)
        position[rows_j] = np.arange(len(rows_j))
        tables.append(np.empty((len(rows_j), int(k_max), len(values))))
    by_T = np.argsort(T, kind="stable")
    starts = np.flatnonzero(np.r_[True, T[by_T][1:] != T[by_T][:-1]])
    with np.errstate(all="ignore"):
        for group in np.split(by_T, starts[1:]):
            a_post, b_post = alpha + T[group[0]], beta + T[group[0]]
            q = tau / (a_post + tau)  # (draws, nodes)
            log_w = np.concatenate([np.log(weights * t / 2.0) + np.log(s / b_post) + (s + 1.0) * np.log(b_post / (b_post + tau[:-1])),
                                    s * np.log(b_post / (b_post + t))], axis=1)
            k_group = int(sizes[group].max())
            powers = np.ones((len(values), len(tau), k_group))  # q_j^i, i = 0..k_group - 1
            powers[:, :, 1:] = q[:, :, None]
            np.cumprod(powers, axis=2, out=powers)
            total_w = np.exp(log_w).sum(axis=1)[:, None, None]
            for j in np.unique(slot[group]):
                members = group[slot[group] == j]
                k_max = int(lengths[j])
                shape = r + x[members][None, :]  # (draws, rows)
                log_v = log_w[:, None, :] + shape[:, :, None] * np.log1p(-q)[:, None, :]
                log_c = special.gammaln(shape + k_max - 1.0) - special.gammaln(shape) - special.gammaln(float(k_max))  # the largest c_i
                safe = np.all(log_v > -LOG_SAFE, axis=(0, 2)) & np.all(log_c < LOG_SAFE, axis=0)
                coef = np.ones((len(values), len(members), k_max))
                coef[:, :, 1:] = (shape[:, :, None] + np.arange(k_max - 1)) / np.arange(1.0, k_max)
                np.cumprod(coef, axis=2, out=coef)
                surv = coef * (np.exp(log_v) @ powers[:, :, :k_max])  # the pmf m_i, then in place 1 - its cumulative sum
                np.cumsum(surv, axis=2, out=surv)
                np.subtract(total_w, surv, out=surv)
                out = np.clip(surv, 0.0, 1.0, out=surv).transpose(1, 2, 0)
                if not np.all(safe):  # far in the tail of double range: node by node, with the log recursion
                    deep = members[~safe]
                    out[~safe] = np.stack([pareto_alive_survival(tuple(v), x[deep], T[deep], t, k_max) for v in values], axis=2)
                tables[j][position[members]] = out
    for j in range(len(lengths)):
        yield np.flatnonzero(slot == j), tables[j]


def _per_draw_blocks(alive_survival: Callable[..., np.ndarray]):
    """Survival tables by length for all draws from a model's survival function, one draw at a time."""
    def blocks(values: np.ndarray, frequency: np.ndarray, T: np.ndarray, t: float,
               sizes: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for k_max in np.unique(sizes):
            rows = np.flatnonzero(sizes == k_max)
            tab = np.empty((len(rows), int(k_max), len(values)))
            for d, v in enumerate(values):
                tab[:, :, d] = alive_survival(tuple(v), frequency[rows], T[rows], t, int(k_max))
            yield rows, tab

    return blocks


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class PredictiveModel:
    """What the intervals need from one counting model, each a pure function of a parameter tuple.

    ``alive_survival(params, x, T, t, k_max)`` is P(X(t) >= k | alive) for k = 1..k_max;
    ``p_alive(params, x, t_x, T)``; ``log_likelihood(params, x, t_x, T, weights)`` is the
    total on the original scale; ``fit(x, t_x, T, weights, initial_log_params)`` refits for
    the bootstrap (an :class:`clv.likelihood.Optimum`; None: no bootstrap);
    ``expected_new(params, t)`` is E[X(t)] for a customer who just made a first purchase
    (the tracking plot's model line); ``information``, when given, is the observed information
    in log-parameters from analytic gradients (else the log-likelihood is differenced twice);
    ``survival_blocks(values, x, T, t, sizes)``, when given, is ``alive_survival`` for every draw
    at once, grouped by table length (:func:`pareto_survival_blocks`; else draw by draw), and
    ``p_alive_draws(values, x, t_x, T)`` is ``p_alive`` for every draw, (rows, draws).
    """

    name: str
    alive_survival: Callable[..., np.ndarray]
    p_alive: Callable[..., np.ndarray]
    log_likelihood: Callable[..., float]
    fit: Callable[..., likelihood.Optimum] | None
    expected_new: Callable[[Sequence[float], np.ndarray], np.ndarray]
    information: Callable[..., np.ndarray] | None = None  # (params, x, t_x, T, weights): minus the log-scale Hessian
    survival_blocks: Callable[..., Iterator[tuple[np.ndarray, np.ndarray]]] | None = None  # all draws at once
    p_alive_draws: Callable[..., np.ndarray] | None = None  # (values, x, t_x, T): (rows, draws)


def _bgnbd_refit(x, tx, T, w, initial_log_params):
    return likelihood.fit_bgnbd(x, tx, T, w, initial_log_params=initial_log_params, standard_errors=False)


def _information(objective: Callable[..., tuple[float, np.ndarray]], data, time_scaled: tuple[int, ...]):
    """Minus the Hessian of a model's total log-likelihood in log-parameters, from its fit objective's
    analytic gradient (:func:`clv.likelihood.log_information`)."""
    def information(params, x, tx, T, w) -> np.ndarray:
        return likelihood.log_information(objective, data.build(x, tx, T, w, scale=1.0 / float(np.max(T))), params, time_scaled)

    return information


def _bgnbd_new(params: Sequence[float], t: np.ndarray) -> np.ndarray:
    """FHL 2005 eq. 9: E[X(t)] = (a+b-1)/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; t/(alpha+t))]."""
    t = np.asarray(t, float)
    zeros = np.zeros_like(t)
    out = np.array([expectations.bgnbd_unconditional_part(tuple(params), float(ti), zeros[:1], zeros[:1])[0] for ti in t])
    return np.where(t > 0, out, 0.0)


def _new_customer(p_alive: Callable[..., np.ndarray], unconditional: Callable[..., np.ndarray]):
    """E[X(t)] for a customer who has just made a first purchase (x = t_x = T = 0): P(alive) x the conditional part.

    For MBG/NBD that is Batislam et al. 2007's unconditional E[X(t)], for Pareto/NBD
    Schmittlein et al. 1987's (the customer at time 0 may already be gone under MBG/NBD).
    """
    def expected_new(params: Sequence[float], t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, float)
        zero = np.zeros(1)
        alive = float(p_alive(tuple(params), zero, zero, zero)[0])
        out = np.array([alive * unconditional(tuple(params), float(ti), zero, zero)[0] for ti in t])
        return np.where(t > 0, out, 0.0)

    return expected_new


def _refit(fit: Callable[..., likelihood.Optimum]):
    def refit(x, tx, T, w, initial_log_params):
        return fit(x, tx, T, w, initial_log_params=initial_log_params, standard_errors=False)

    return refit


def _pareto_p_alive(params: Sequence[float], frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Note 009, eq. 21, with A_0 by the piecewise integral, as the fitted model's own P(alive) (to about 1e-13)."""
    return expectations.pareto_p_alive(tuple(params), frequency, recency, T, log_a0=likelihood.pareto_log_a0)


def _pareto_p_alive_draws(values: np.ndarray, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """:func:`_pareto_p_alive` for every draw, (rows, draws), on one time grid for the A_0 integrals."""
    log_a0 = likelihood.pareto_log_a0_of(frequency, recency, T)

    def p_alive(params: Sequence[float], *rows: np.ndarray) -> np.ndarray:
        return expectations.pareto_p_alive(tuple(params), *rows, log_a0=lambda p, *_: log_a0(p))

    return _per_draw_p_alive(p_alive)(values, frequency, recency, T)


def _per_draw_p_alive(p_alive: Callable[..., np.ndarray]):
    """P(alive) for all draws, (rows, draws), from a model's P(alive), one draw at a time."""
    def over_draws(values: np.ndarray, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
        return np.stack([p_alive(tuple(v), frequency, recency, T) for v in values], axis=1)

    return over_draws


# The models intervals know, by name.
MODELS: dict[str, PredictiveModel] = {
    "bgnbd": PredictiveModel("bgnbd", bgnbd_alive_survival, expectations.bgnbd_p_alive, likelihood.bgnbd_log_likelihood,
                             _bgnbd_refit, _bgnbd_new, _information(likelihood.bgnbd_objective, likelihood.BGNBDData, (1,))),
    "mbgnbd": PredictiveModel("mbgnbd", mbgnbd_alive_survival, expectations.mbgnbd_p_alive, likelihood.mbgnbd_log_likelihood,
                              _refit(likelihood.fit_mbgnbd), _new_customer(expectations.mbgnbd_p_alive, expectations.mbgnbd_unconditional_part),
                              _information(likelihood.mbgnbd_objective, likelihood.RowData, (1,))),
    "pareto": PredictiveModel("pareto", pareto_alive_survival, _pareto_p_alive, likelihood.pareto_log_likelihood,
                              _refit(likelihood.fit_pareto), _new_customer(expectations.pareto_p_alive, expectations.pareto_unconditional_part),
                              _information(likelihood.pareto_objective, likelihood.RowData, (1, 3)), pareto_survival_blocks,
                              _pareto_p_alive_draws),
}


def predictive_model(name: str) -> PredictiveModel:
    if name not in MODELS:
        raise InputError(f"prediction intervals are not available for model '{name}' (known: {', '.join(MODELS)})")
    return MODELS[name]


def check_level(level: float) -> float:
    """An interval level in (0, 1), e.g. 0.9."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not (0.0 < float(level) < 1.0) or math.isnan(level):
        raise InputError(f"{option('interval', level)} must be a probability between 0 and 1 (exclusive), such as 0.9")
    return float(level)


# --------------------------------------------------------------------------- parameter uncertainty


@dataclass(frozen=True)
class ParameterDraws:
    """Parameter vectors whose mixture carries the estimation uncertainty into the intervals.

    ``method`` is ``covariance`` (normal on the log scale), ``bootstrap`` (refits on resampled
    customers), or ``none`` (the point estimate alone: ``values`` has one row).
    """

    values: np.ndarray  # (n_draws, n_params)
    method: str
    log_covariance: np.ndarray | None = None
    n_failed: int = 0

    @property
    def n_draws(self) -> int:
        return int(self.values.shape[0])


def log_covariance(model: PredictiveModel, params: Sequence[float], x: np.ndarray, tx: np.ndarray, T: np.ndarray,
                   weights: np.ndarray) -> np.ndarray | None:
    """Inverse of minus the Hessian of the total log-likelihood in log-parameters (central differences), or None.

    None when the Hessian is not finite and negative definite (the optimum is not a proper maximum).
    """
    if model.information is not None:
        with np.errstate(all="ignore"):
            info = model.information(tuple(params), x, tx, T, weights)
        info = (info + info.T) / 2
        return np.linalg.inv(info) if likelihood.positive_definite(info) else None
    theta = np.log(np.asarray(params, float))
    k = len(theta)
    h = HESSIAN_LOG_STEP

    def ll(v: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            return model.log_likelihood(tuple(np.exp(v)), x, tx, T, weights)

    f0 = ll(theta)
    hess = np.empty((k, k))
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = h
        hess[i, i] = (ll(theta + ei) - 2 * f0 + ll(theta - ei)) / h**2
        for j in range(i):
            ej = np.zeros(k)
            ej[j] = h
            hess[i, j] = hess[j, i] = (ll(theta + ei + ej) - ll(theta + ei - ej) - ll(theta - ei + ej) + ll(theta - ei - ej)) / (4 * h**2)
    info = -hess
    if not likelihood.positive_definite(info):
        return None
    return np.linalg.inv(info)


def parameter_draws(
    model: PredictiveModel,
    params: Sequence[float],
    x: np.ndarray,
    tx: np.ndarray,
    T: np.ndarray,
    weights: np.ndarray,
    *,
    n_draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    known_covariance: np.ndarray | None = None,
) -> ParameterDraws:
    """Draws from the sampling distribution of the fitted ``params`` on data (x, t_x, T, weights).

    ``known_covariance``, the log-parameters' covariance on the customers the model was fitted on
    (a saved model's), is used as it is: then the data only shape the predictive distribution.

    Normal on the log scale with :func:`log_covariance` when the optimum is a proper maximum and
    every log-standard error is at most ``MAX_LOG_SD``; otherwise ``BOOTSTRAP_REFITS`` refits on
    multinomial resamples of the customers (fixed ``seed``), started from the estimate. Draws whose
    refit fails are dropped and counted; with fewer than half left, only the estimate is used.
    """
    point = np.asarray(params, float)[None, :]
    if n_draws <= 0:
        return ParameterDraws(point, "none")
    rng = np.random.default_rng(seed)
    cov = log_covariance(model, params, x, tx, T, weights) if known_covariance is None else np.asarray(known_covariance, float)
    if cov is not None and np.all(np.sqrt(np.diag(cov)) <= MAX_LOG_SD):
        z = rng.multivariate_normal(np.log(point[0]), cov, size=n_draws, method="cholesky")
        return ParameterDraws(np.exp(z), "covariance", cov)
    if model.fit is None:
        return ParameterDraws(point, "none", cov)
    w = np.asarray(weights, float)
    n = int(np.rint(w.sum()))
    start = np.log(point[0])
    start[1] += math.log(1.0 / float(np.max(T)))  # the fitters start alpha on rescaled time (largest T = 1)
    fits, failed = [], 0
    for _ in range(BOOTSTRAP_REFITS):
        wb = rng.multinomial(n, w / w.sum()).astype(float)
        keep = wb > 0
        opt = model.fit(x[keep], tx[keep], T[keep], wb[keep], start)
        values = np.asarray(opt.params, float)
        if opt.converged and np.all(np.isfinite(values)) and np.all(values > 0):
            fits.append(values)
        else:
            failed += 1
    if len(fits) < BOOTSTRAP_REFITS / 2:
        return ParameterDraws(point, "none", cov, failed)
    return ParameterDraws(np.array(fits), "bootstrap", cov, failed)


# --------------------------------------------------------------------------- the predictive distribution


def distinct(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Distinct rows of equal-length columns, and each input row's index into them."""
    codes = []
    values = []
    for c in columns:
        v, idx = np.unique(np.asarray(c, float), return_inverse=True)
        values.append(v)
        codes.append(idx.astype(np.int64))
    key = np.zeros(len(codes[0]), dtype=np.int64)
    for v, idx in zip(values, codes, strict=True):
        key = key * len(v) + idx
    keys, inverse = np.unique(key, return_inverse=True)
    out = []
    for v in reversed(values):
        out.append(v[keys % len(v)])
        keys = keys // len(v)
    return list(reversed(out)), inverse


@dataclass(frozen=True)
class Predictive:
    """The mixture predictive distribution of X(t) for a set of customers, as survival tables.

    ``survival(k)`` gives P(X(t) >= k) per customer; quantiles and the interval's own coverage
    come from it. Built by :func:`predictive`.
    """

    t: float
    p_alive: np.ndarray  # (n_draws, n_rows): P(alive) per draw per distinct (x, t_x, T) row
    row_pair: np.ndarray  # distinct row -> (x, T) pair
    customer_row: np.ndarray  # customer -> distinct row
    table: np.ndarray  # (total length, n_draws): P(X >= k | alive) for k = 1..k_max(pair), pairs concatenated
    offsets: np.ndarray  # start of each pair's block in ``table``
    lengths: np.ndarray  # k_max per pair
    draws: ParameterDraws = field(repr=False)

    @property
    def n_customers(self) -> int:
        return len(self.customer_row)

    def _row_survival(self, rows: np.ndarray, k: np.ndarray) -> np.ndarray:
        """P(X >= k) for distinct ``rows`` at counts ``k`` (k >= 0; beyond the table: below ``TAIL``, taken as 0)."""
        pair = self.row_pair[rows]
        inside = (k >= 1) & (k <= self.lengths[pair])
        idx = self.offsets[pair] + np.clip(k, 1, self.lengths[pair]) - 1
        g = self.table[idx]  # (n, draws)
        s = np.einsum("nd,dn->n", g, self.p_alive[:, rows]) / self.p_alive.shape[0]
        return np.where(k <= 0, 1.0, np.where(inside, s, 0.0))

    def survival(self, k: np.ndarray) -> np.ndarray:
        """P(X(t) >= k) per customer (``k`` one per customer)."""
        return self._row_survival(self.customer_row, np.asarray(k, np.int64))

    def quantile(self, q: float) -> np.ndarray:
        """The q-quantile per customer: the smallest k with P(X <= k) >= q."""
        return self._row_quantile(q)[self.customer_row]

    def _row_quantile(self, q: float) -> np.ndarray:
        """Bisection on k per distinct row, on the rows not yet settled only (most tables are short).

        The first look is at k = 0: most customers' lower quantile is 0, settled by that one look.
        """
        lo = np.zeros(self.p_alive.shape[1], np.int64)
        hi = self.lengths[self.row_pair].astype(np.int64)  # P(X >= k_max + 1) < tail: always far enough
        active = np.flatnonzero(lo < hi)
        first = True
        while len(active):
            mid = lo[active] if first else (lo[active] + hi[active]) // 2
            first = False
            done = self._row_survival(active, mid + 1) <= 1.0 - q + 1e-12
            hi[active] = np.where(done, mid, hi[active])
            lo[active] = np.where(done, lo[active], mid + 1)
            active = active[lo[active] < hi[active]]
        return lo

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """The equal-tailed ``level`` interval per customer: the (1 - level)/2 and (1 + level)/2 quantiles."""
        return self.quantile((1.0 - level) / 2.0), self.quantile((1.0 + level) / 2.0)

    def interval_with_mass(self, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`interval` and :meth:`mass` together, computed once per distinct row."""
        low = self._row_quantile((1.0 - level) / 2.0)
        high = self._row_quantile((1.0 + level) / 2.0)
        rows = np.arange(len(low))
        mass = self._row_survival(rows, low) - self._row_survival(rows, high + 1)
        c = self.customer_row
        return low[c], high[c], mass[c]

    def mass(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """P(low <= X <= high) per customer: an interval's own coverage (whole counts hold more than the level)."""
        return self.survival(low) - self.survival(np.asarray(high) + 1)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Per draw, per customer E[X] and E[X^2] (from the tables: sum of P(X >= k) and of (2k - 1) P(X >= k))."""
        layout = np.argsort(self.offsets, kind="stable")  # the pairs in the order their blocks sit in the table
        pair_k = np.repeat(layout, self.lengths[layout])
        k = np.arange(len(pair_k)) - self.offsets[pair_k] + 1
        n_pairs = len(self.lengths)
        m1 = np.stack([np.bincount(pair_k, weights=self.table[:, d], minlength=n_pairs) for d in range(self.table.shape[1])])
        m2 = np.stack([np.bincount(pair_k, weights=(2 * k - 1) * self.table[:, d], minlength=n_pairs)
                       for d in range(self.table.shape[1])])
        pa = self.p_alive[:, self.customer_row]
        pairs = self.row_pair[self.customer_row]
        return pa * m1[:, pairs], pa * m2[:, pairs]


def _table_lengths(params: np.ndarray, x: np.ndarray, T: np.ndarray, t: float, tail: float) -> np.ndarray:
    """A first table length per (x, T) pair from the negative binomial that bounds X (X <= N(t)), over the draws.

    Its mean plus a normal quantile for ``tail`` widened for the skew, in standard deviations; a
    table found too short is lengthened by :func:`predictive`.
    """
    r, alpha = params[:, 0][:, None], params[:, 1][:, None]
    shape = r + x[None, :]
    odds = t / (alpha + T[None, :])
    mean = shape * odds
    sd = np.sqrt(mean * (1.0 + odds))
    z = 1.5 * float(-special.ndtri(tail))
    return np.minimum(np.ceil(np.max(mean + z * sd + 3.0, axis=0)).astype(np.int64), MAX_COUNT)


def predictive(
    model: PredictiveModel,
    draws: ParameterDraws,
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    t: float,
    *,
    tail: float = TAIL,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Predictive:
    """The mixture predictive distribution of X(t) over ``draws`` for each customer (x, t_x, T).

    Survival tables are built once per distinct (x, T) pair and draw, in blocks of pairs of
    similar length; P(alive) once per distinct (x, t_x, T) row and draw. A pair's table is
    lengthened until P(X >= k | alive) < ``tail`` under every draw: quantiles below 1 - ``tail``
    are exact, and the moments leave out at most about that mass. ``rows``, the distinct rows and
    each customer's index into them (:func:`distinct`), saves computing them again.
    """
    if rows is None:
        (row_x, row_tx, row_T), customer_row = distinct(frequency, recency, T)
    else:
        row_x, row_tx, row_T, customer_row = rows
    (pair_x, pair_T), row_pair = distinct(row_x, row_T)
    values = draws.values
    # Rows by draws, so that a row's draws sit together for the quantiles' look-ups; Predictive holds its transpose.
    p_alive = (model.p_alive_draws or _per_draw_p_alive(model.p_alive))(values, row_x, row_tx, row_T)
    lengths = _table_lengths(values, pair_x, pair_T, t, tail)
    parts: list[np.ndarray] = []
    order: list[np.ndarray] = []
    todo = np.arange(len(pair_x))
    while len(todo):
        # Blocks of pairs whose lengths round up to the same quarter power of two: under 19% padding.
        size = np.ceil(2 ** (np.ceil(4 * np.log2(np.maximum(lengths[todo], 2))) / 4)).astype(np.int64)
        again = []
        blocks = model.survival_blocks or _per_draw_blocks(model.alive_survival)
        for block, tab in blocks(values, pair_x[todo], pair_T[todo], t, size):
            members = todo[block]
            k_max = tab.shape[1]
            short = (tab[:, -1, :].max(axis=1) >= tail) & (k_max < MAX_COUNT)
            if np.any(short):
                lengths[members[short]] = min(2 * k_max, MAX_COUNT)
                again.append(members[short])
            ok = ~short
            lengths[members[ok]] = np.minimum(lengths[members[ok]], k_max)
            keep = np.arange(k_max)[None, :] < lengths[members[ok]][:, None]
            parts.append((tab if ok.all() else tab[ok])[keep])  # pair-major, k ascending
            order.append(members[ok])
        todo = np.concatenate(again) if again else np.array([], dtype=np.int64)
    pair_order = np.concatenate(order)
    block_start = np.concatenate([[0], np.cumsum(lengths[pair_order])[:-1]]).astype(np.int64)
    offsets = np.empty(len(pair_x), np.int64)
    offsets[pair_order] = block_start
    table = np.concatenate(parts, axis=0)
    return Predictive(t, p_alive.T, row_pair, customer_row, table, offsets, lengths, draws)


# --------------------------------------------------------------------------- what predict adds


@dataclass(frozen=True)
class CustomerIntervals:
    """Per customer (in input order), the ``level`` interval of purchases in the horizon and of CLV.

    ``clv_low, clv_high`` scale the customer's CLV by ``purchases_low / expected_purchases`` and
    ``purchases_high / expected_purchases``: the purchase interval times the Gamma-Gamma expected
    spend, discounted as the CLV itself. Spend per purchase is held at its expectation, so the
    interval is that of the number of purchases, not of spend. ``implied`` is the probability the
    model gives each interval (whole counts hold at least ``level``).
    """

    level: float
    purchases_low: np.ndarray
    purchases_high: np.ndarray
    clv_low: np.ndarray
    clv_high: np.ndarray
    implied: np.ndarray
    draws: ParameterDraws


def customer_intervals(predictive_dist: Predictive, level: float, expected_purchases: np.ndarray, clv: np.ndarray) -> CustomerIntervals:
    """The ``level`` interval per customer from a predictive distribution, with CLV scaled from it."""
    level = check_level(level)
    low, high, mass = predictive_dist.interval_with_mass(level)
    expected = np.asarray(expected_purchases, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_purchase = np.where(expected > 0, np.asarray(clv, float) / expected, 0.0)
    return CustomerIntervals(
        level, low, high, low * per_purchase, high * per_purchase, mass, predictive_dist.draws,
    )


def prediction_intervals(
    model: str,
    params: Sequence[float],
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    *,
    t: float,
    level: float,
    expected_purchases: np.ndarray,
    clv: np.ndarray,
    seed: int = 0,
    n_draws: int = DEFAULT_DRAWS,
    known_covariance: np.ndarray | None = None,
) -> CustomerIntervals:
    """``level`` intervals of purchases in ``t`` periods and of CLV per customer, for the model named ``model``.

    The parameter uncertainty is ``known_covariance`` (a saved model's, from the customers it was
    fitted on) or else estimated on the same customers (:func:`parameter_draws`); the
    tables stop at a tail well below the interval's upper tail, so the quantiles are exact. The CLV
    interval is the purchase interval times the Gamma-Gamma expected spend with the CLV's own
    discounting (``clv`` x bound / ``expected_purchases``); spend is not simulated.
    """
    level = check_level(level)
    spec = predictive_model(model)
    x, tx, T_ = (np.asarray(c, float) for c in (frequency, recency, T))
    (rx, rtx, rT), inverse = distinct(x, tx, T_)
    weights = np.bincount(inverse, minlength=len(rx)).astype(float)
    draws = parameter_draws(spec, params, rx, rtx, rT, weights, n_draws=n_draws, seed=seed, known_covariance=known_covariance)
    dist = predictive(spec, draws, x, tx, T_, t, tail=(1.0 - level) / 20.0, rows=(rx, rtx, rT, inverse))
    return customer_intervals(dist, level, expected_purchases, clv)


def fitted_log_covariance(model: str, params: Sequence[float], frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray | None:
    """The log-parameters' covariance (inverse observed information) on the customers a model was
    fitted on, to save with it; None where the optimum is no proper maximum."""
    x, tx, T_ = (np.asarray(c, float) for c in (frequency, recency, T))
    (rx, rtx, rT), inverse = distinct(x, tx, T_)
    return log_covariance(predictive_model(model), params, rx, rtx, rT, np.bincount(inverse, minlength=len(rx)).astype(float))
