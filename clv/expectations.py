"""The BG/NBD and Gamma-Gamma conditional expectations that score customers, vectorised.

P(alive), the (x, T) part of E[X(t) | x, t_x, T] (evaluated once per distinct pair by
the callers) and E[M | x, m_x]; the likelihoods that fit the parameters are in
:mod:`clv.likelihood`. The tests hold each to lifetimes' own predictions (1e-9).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from clv.lazy import lazy_module

special = lazy_module("scipy.special")  # expit, hyp2f1: loaded when a model is first scored

def bgnbd_p_alive(params: tuple[float, ...], frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(alive | x, t_x, T) = 1 / (1 + delta(x>0) a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)) (Fader, Hardie & Lee 2008, note 021, eq. 2)."""
    r, alpha, a, b = params
    x = np.asarray(frequency, float)
    log_div = (r + x) * np.log((alpha + T) / (alpha + recency)) + np.log(a / (b + np.maximum(x, 1) - 1))
    return np.where(x == 0, 1.0, special.expit(-log_div))


def bgnbd_p_any_purchase(params: tuple[float, ...], t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(X(T, T + t) >= 1 | x, t_x, T): the chance of at least one purchase in the next ``t`` periods.

    BG/NBD drops customers out only just after a purchase, so one alive at T with no
    purchase in (T, T + t] is still alive; given alive, the rate's posterior is
    Gamma(r + x, alpha + T), so P(no purchase) = ((alpha + T) / (alpha + T + t))^(r + x)
    (Fader, Hardie & Lee 2005, sections 3-4). Unlike ``1 - exp(-E[X(t)])`` it does not
    overstate the chance for customers who may have left (Jensen: 1 - e^-x is concave).
    """
    r, alpha, _, _ = params
    x = np.asarray(frequency, float)
    T = np.asarray(T, float)
    quiet = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))
    return bgnbd_p_alive(params, x, recency, T) * (1.0 - quiet)


def bgnbd_unconditional_part(params: tuple[float, ...], t: float, frequency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """The numerator of FHL 2005 eq. 10, which depends on (x, T) but not on t_x.

    ``(a+b+x-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))]``;
    where 2F1 overflows, the Euler transformation
    ``2F1(c-a', c-b'; c; z) (1-z)^(c-a'-b')`` gives the same value, as in lifetimes.
    """
    return _beta_geometric_part(params, t, frequency, T, dropouts_at_start=0)


def _beta_geometric_part(params: tuple[float, ...], t: float, frequency: np.ndarray, T: np.ndarray, *, dropouts_at_start: int) -> np.ndarray:
    """``c/(a-1) [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b'; c; t/(alpha+T+t))]``, b' = b+x+d, c = a+b+x-1+d.

    ``d`` counts the chances to drop out before the first repeat purchase beyond BG/NBD's:
    0 for BG/NBD (FHL 2005 eq. 10), 1 for MBG/NBD (Batislam et al. 2007 eq. 6), where the
    customer may also leave at time 0. Where 2F1 overflows, the Euler transformation
    ``2F1(c-a', c-b'; c; z) (1-z)^(c-a'-b')`` gives the same value, as in lifetimes.
    """
    r, alpha, a, b = params
    x = np.asarray(frequency, float)
    _a, _b, _c = r + x, b + x + dropouts_at_start, a + b + x + (dropouts_at_start - 1)
    z = t / (alpha + T + t)
    with np.errstate(all="ignore"):
        ln_hyp = np.log(special.hyp2f1(_a, _b, _c, z))
        bad = ~np.isfinite(ln_hyp)
        if bad.any():
            alt = np.log(special.hyp2f1(_c - _a, _c - _b, _c, z)) + (_c - _a - _b) * np.log1p(-z)
            ln_hyp = np.where(bad, alt, ln_hyp)
        return _c / (a - 1) * (1 - np.exp(ln_hyp + (r + x) * np.log((alpha + T) / (alpha + t + T))))


def gamma_gamma_expected_average(params: tuple[float, ...], frequency: np.ndarray, monetary_value: np.ndarray) -> np.ndarray:
    """E[M | x, m_x] = (1 - w) * p v / (q - 1) + w * m_x with w = p x / (p x + q - 1) (note 025, eq. 5)."""
    p, q, v = params
    x = np.asarray(frequency, float)
    weight = p * x / (p * x + q - 1)
    return (1 - weight) * (v * p / (q - 1)) + weight * np.asarray(monetary_value, float)


def bgnbd_no_purchase_if_alive(params: tuple[float, ...], t: float, frequency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(no purchase in (T, T + t] | alive at T) under BG/NBD and MBG/NBD: ((alpha+T)/(alpha+T+t))^(r+x).

    Both models drop a customer only right after a purchase, so an alive customer makes
    none in the window exactly when the Poisson clock, with rate ~ Gamma(r + x, alpha + T)
    given the history (FHL 2005, sec. 5), does not tick: the Gamma's Laplace transform.
    """
    r, alpha = params[0], params[1]
    x = np.asarray(frequency, float)
    return np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))


# --------------------------------------------------------------------------- MBG/NBD


def mbgnbd_p_alive(params: tuple[float, ...], frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(alive | x, t_x, T) = 1 / (1 + a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x)) (Batislam, Denizel & Filiztekin 2007, eq. 5).

    Unlike BG/NBD, MBG/NBD lets a customer leave right after the first purchase, so a
    one-time buyer's P(alive) falls as time passes without a repeat purchase.
    """
    r, alpha, a, b = params
    x = np.asarray(frequency, float)
    log_div = (r + x) * (np.log(alpha + T) - np.log(alpha + recency)) + np.log(a) - np.log(b + x)
    return special.expit(-log_div)


def mbgnbd_unconditional_part(params: tuple[float, ...], t: float, frequency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """E[X(t) | x, t_x, T] / P(alive) under MBG/NBD (Batislam et al. 2007, eq. 6), a function of (x, T) only.

    ``(a+b+x)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x+1; a+b+x; t/(alpha+T+t))]``,
    with Euler's transformation where 2F1 overflows, as for BG/NBD.
    """
    return _beta_geometric_part(params, t, frequency, T, dropouts_at_start=1)


# --------------------------------------------------------------------------- Pareto/NBD


def _log_hyp_unit(b: np.ndarray, c: np.ndarray, z: np.ndarray) -> np.ndarray:
    """log 2F1(1, b; c; z) for c > b > 0 and 0 <= z < 1: a series of positive terms bounded by 1 / (1 - z)."""
    with np.errstate(all="ignore"):
        return np.log(special.hyp2f1(1.0, b, c, z))


def pareto_log_a0(params: tuple[float, ...], frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """log A_0 of Fader & Hardie's Pareto/NBD note 009 (eqs. 19-20), stable for large x and T.

    A_0 = F(t_x) / (m + t_x)^(r+s+x) - F(T) / (m + T)^(r+s+x), with m = max(alpha, beta) and
    F(y) = 2F1(r+s+x, b'; r+s+x+1; |alpha-beta| / (m + y)), b' = s + 1 when alpha >= beta, else r + x.
    Each 2F1 goes through Euler's transformation to 2F1(1, r+s+x+1-b'; r+s+x+1; z) (1-z)^(1-b'),
    a series of positive terms that neither overflows nor cancels, and the difference of the two
    terms is taken in logs (log1p(-exp(.))), as CLVTools does. -inf where t_x = T (A_0 = 0).
    """
    r, alpha, s, beta = params
    x = np.asarray(frequency, float)
    rsx = r + s + x
    high, low = max(alpha, beta), min(alpha, beta)
    b2 = np.full_like(x, s + 1.0) if alpha >= beta else r + x
    gap = high - low

    def log_term(y: np.ndarray) -> np.ndarray:
        z = gap / (high + y)
        return (1 - b2) * (np.log(low + y) - np.log(high + y)) + _log_hyp_unit(rsx + 1 - b2, rsx + 1, z) - rsx * np.log(high + y)

    first, second = log_term(np.asarray(recency, float)), log_term(np.asarray(T, float))
    with np.errstate(all="ignore"):
        return first + np.log(-np.expm1(np.minimum(second - first, 0.0)))


def pareto_p_alive(params: tuple[float, ...], frequency: np.ndarray, recency: np.ndarray, T: np.ndarray, *,
                   log_a0: Callable[..., np.ndarray] = pareto_log_a0) -> np.ndarray:
    """P(alive | x, t_x, T) = 1 / (1 + s/(r+s+x) (alpha+T)^(r+x) (beta+T)^s A_0) (Fader & Hardie, note 009, eq. 21).

    ``log_a0`` computes log A_0: the 2F1 closed form here, or the faster piecewise integral
    of :func:`clv.likelihood.pareto_log_a0`.
    """
    r, alpha, s, beta = params
    x = np.asarray(frequency, float)
    log_div = np.log(s) - np.log(r + s + x) + (r + x) * np.log(alpha + T) + s * np.log(beta + T) + log_a0(params, x, recency, T)
    return special.expit(-log_div)


def _shrink(s: float, log_ratio: np.ndarray) -> np.ndarray:
    """(1 - exp((s-1) L)) / (s-1), its limit -L at s = 1 (L = log((beta+T)/(beta+T+t)) <= 0)."""
    if abs(s - 1.0) < 1e-12:
        return -log_ratio
    return -np.expm1((s - 1.0) * log_ratio) / (s - 1.0)


def pareto_unconditional_part(params: tuple[float, ...], t: float, frequency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """E[X(t) | x, t_x, T] / P(alive) = (r+x)(beta+T)/(alpha+T) (1 - ((beta+T)/(beta+T+t))^(s-1)) / (s-1)

    (Fader & Hardie, note 009, eq. 22; Schmittlein, Morrison & Colombo 1987), a function of (x, T) only.
    """
    r, alpha, s, beta = params
    x = np.asarray(frequency, float)
    T = np.asarray(T, float)
    log_ratio = np.log(beta + T) - np.log(beta + T + t)
    return (r + x) * (beta + T) / (alpha + T) * _shrink(s, log_ratio)


def pareto_dies_first(r: np.ndarray | float, alpha: np.ndarray | float, s: float, beta: np.ndarray | float) -> np.ndarray:
    """E[mu / (lambda + mu)] for lambda ~ Gamma(r, alpha), mu ~ Gamma(s, beta): the chance that an
    alive customer leaves before the next purchase.

    = int_0^inf s beta^s alpha^r (alpha+u)^-r (beta+u)^-(s+1) du, an Euler integral of 2F1, here in
    its transformed forms with first argument 1: s/(r+s) 2F1(1, r; r+s+1; 1 - beta/alpha) when
    alpha >= beta, else s/(r+s) (alpha/beta) 2F1(1, s+1; r+s+1; 1 - alpha/beta). s/(r+s) at alpha = beta.
    """
    r = np.asarray(r, float)
    alpha = np.asarray(alpha, float)
    beta = np.asarray(beta, float)
    with np.errstate(all="ignore"):
        ge = alpha >= beta
        z = np.where(ge, 1 - beta / alpha, 1 - alpha / beta)
        second = np.where(ge, r, s + 1.0)
        factor = np.where(ge, 1.0, alpha / beta)
        return s / (r + s) * factor * special.hyp2f1(1.0, second, r + s + 1.0, z)


def pareto_no_purchase_if_alive(params: tuple[float, ...], t: float, frequency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(no purchase in (T, T + t] | alive at T) under Pareto/NBD.

    Given the history and alive at T, lambda ~ Gamma(r+x, alpha+T) and mu ~ Gamma(s, beta+T)
    (Fader & Hardie, note 009, sec. 5), the lifetime left is Exponential(mu) and purchases are
    Poisson(lambda) while alive, so P(none) = E[exp(-(lambda+mu) t)] + E[mu/(lambda+mu) (1 - exp(-(lambda+mu) t))].
    The first term is the two Gammas' Laplace transforms E_0; tilting both Gammas by exp(-t .)
    turns the last into E_0 times the same "leaves first" chance at rates alpha+T+t, beta+T+t:
    P(none) = E_0 + D(alpha+T, beta+T) - E_0 D(alpha+T+t, beta+T+t), with D from :func:`pareto_dies_first`.
    """
    r, alpha, s, beta = params
    x = np.asarray(frequency, float)
    T = np.asarray(T, float)
    rx = r + x
    e0 = np.exp(rx * (np.log(alpha + T) - np.log(alpha + T + t)) + s * (np.log(beta + T) - np.log(beta + T + t)))
    now = pareto_dies_first(rx, alpha + T, s, beta + T)
    later = pareto_dies_first(rx, alpha + T + t, s, beta + T + t)
    return np.clip(e0 + now - e0 * later, 0.0, 1.0)
