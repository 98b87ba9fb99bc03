"""The BG/NBD and Gamma-Gamma conditional expectations that score customers, vectorised.

P(alive), the (x, T) part of E[X(t) | x, t_x, T] (evaluated once per distinct pair by
the callers) and E[M | x, m_x]; the likelihoods that fit the parameters are in
:mod:`clv.likelihood`. The tests hold each to lifetimes' own predictions (1e-9).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, hyp2f1


def bgnbd_p_alive(params: tuple[float, ...], frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(alive | x, t_x, T) = 1 / (1 + delta(x>0) a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)) (Fader, Hardie & Lee 2008, note 021, eq. 2)."""
    r, alpha, a, b = params
    x = np.asarray(frequency, float)
    log_div = (r + x) * np.log((alpha + T) / (alpha + recency)) + np.log(a / (b + np.maximum(x, 1) - 1))
    return np.where(x == 0, 1.0, expit(-log_div))


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
    r, alpha, a, b = params
    x = np.asarray(frequency, float)
    _a, _b, _c = r + x, b + x, a + b + x - 1
    z = t / (alpha + T + t)
    with np.errstate(all="ignore"):
        ln_hyp = np.log(hyp2f1(_a, _b, _c, z))
        bad = ~np.isfinite(ln_hyp)
        if bad.any():
            alt = np.log(hyp2f1(_c - _a, _c - _b, _c, z)) + (_c - _a - _b) * np.log1p(-z)
            ln_hyp = np.where(bad, alt, ln_hyp)
        return (a + b + x - 1) / (a - 1) * (1 - np.exp(ln_hyp + (r + x) * np.log((alpha + T) / (alpha + t + T))))


def gamma_gamma_expected_average(params: tuple[float, ...], frequency: np.ndarray, monetary_value: np.ndarray) -> np.ndarray:
    """E[M | x, m_x] = (1 - w) * p v / (q - 1) + w * m_x with w = p x / (p x + q - 1) (note 025, eq. 5)."""
    p, q, v = params
    x = np.asarray(frequency, float)
    weight = p * x / (p * x + q - 1)
    return (1 - weight) * (v * p / (q - 1)) + weight * np.asarray(monetary_value, float)
