"""Customer lifetime value: who is still a customer, how much they will buy, and whom to keep in touch with.

Pure functions over numpy arrays. ``rfm_summary`` turns transactions into (frequency, recency, T, monetary value)
with the same definitions as ``lifetimes.utils.summary_data_from_transaction_data``; the fitters estimate the
BG/NBD, Pareto/NBD and Gamma-Gamma models by maximum likelihood with analytic gradients (L-BFGS-B on
log-parameters), after compressing identical customers into weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import betaln, digamma, gammaln, hyp2f1, logsumexp

from storefunnel.errors import Invalid

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike

__all__ = [
    "RFM",
    "BetaGeo",
    "CalibrationReport",
    "GammaGamma",
    "ParetoNBD",
    "calibration_holdout_report",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "fit_pareto_nbd",
    "keep_in_touch",
    "rfm_summary",
    "rfm_summary_frame",
]


def _f(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


# --------------------------------------------------------------------------------------------------------------
# Transactions -> RFM
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RFM:
    """One row per customer (sorted by id): repeat purchases, age at last purchase, age, mean repeat spend."""

    customer_ids: npt.NDArray[Any]
    frequency: FloatArray
    recency: FloatArray
    T: FloatArray
    monetary_value: FloatArray


def _days(times: ArrayLike) -> npt.NDArray[np.int64]:
    arr = np.asarray(times)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[D]").astype(np.int64)
    if arr.dtype.kind in "iuf":
        return np.floor(arr.astype(np.float64)).astype(np.int64)
    try:
        return np.asarray(arr, dtype="datetime64[D]").astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise Invalid("times: dates (datetime64 or ISO strings) or numbers of days are required") from exc


def rfm_summary(
    customer_ids: ArrayLike,
    times: ArrayLike,
    values: ArrayLike | None = None,
    observation_end: Any = None,
    unit_days: float = 1.0,
) -> RFM:
    """Frequency, recency, T and monetary value per customer, as lifetimes defines them with ``freq="D"``.

    Purchases are counted per day (several orders on one day are one purchase, their values summed);
    ``frequency`` is the number of purchase days after the first, ``recency`` the time from the first to the
    last purchase day, ``T`` the time from the first purchase day to ``observation_end`` (default: the last
    day in the data; later transactions are dropped), ``monetary_value`` the mean value of the repeat purchase
    days (0 without repeats). Times are in days divided by ``unit_days`` (7 for weeks, as lifetimes'
    ``freq_multiplier``).
    """
    ids = np.asarray(customer_ids)
    day = _days(times)
    if ids.shape[0] != day.shape[0]:
        raise Invalid("times: one time per transaction, as many as customer_ids")
    val = np.zeros(day.shape[0]) if values is None else _f(values)
    if val.shape[0] != day.shape[0]:
        raise Invalid("values: one value per transaction")
    if unit_days <= 0:
        raise Invalid("unit_days: must be positive")
    end = int(day.max()) if observation_end is None else int(_days(np.asarray([observation_end]))[0])
    keep = day <= end
    ids, day, val = ids[keep], day[keep], val[keep]
    if ids.size == 0:
        raise Invalid("times: no transaction on or before observation_end")
    uid, cust = np.unique(ids, return_inverse=True)
    # one purchase per (customer, day), values summed
    order = np.lexsort((day, cust))
    cust, day, val = cust[order], day[order], val[order]
    new = np.ones(cust.size, dtype=bool)
    new[1:] = (cust[1:] != cust[:-1]) | (day[1:] != day[:-1])
    grp = np.cumsum(new) - 1
    p_cust, p_day = cust[new], day[new]
    p_val = np.bincount(grp, weights=val)
    n = uid.size
    count = np.bincount(p_cust, minlength=n)
    first_idx = np.flatnonzero(np.concatenate(([True], p_cust[1:] != p_cust[:-1])))
    last_idx = np.concatenate((first_idx[1:], [p_cust.size])) - 1
    first, last = p_day[first_idx].astype(np.float64), p_day[last_idx].astype(np.float64)
    freq = (count - 1).astype(np.float64)
    repeat_sum = np.bincount(p_cust, weights=p_val, minlength=n) - p_val[first_idx]
    money = np.divide(repeat_sum, freq, out=np.zeros(n), where=freq > 0)
    return RFM(uid, freq, (last - first) / unit_days, (end - first) / unit_days, money)


def rfm_summary_frame(
    transactions: Any,
    customer_col: str,
    date_col: str,
    monetary_col: str | None = None,
    observation_end: Any = None,
    unit_days: float = 1.0,
) -> RFM:
    """``rfm_summary`` over a pandas DataFrame or a mapping of column name -> array (pandas is optional)."""
    cols: Mapping[str, Any] = transactions
    try:
        ids, times = np.asarray(cols[customer_col]), np.asarray(cols[date_col])
        money = None if monetary_col is None else np.asarray(cols[monetary_col])
    except KeyError as exc:
        raise Invalid(f"{exc.args[0]}: no such column in transactions") from exc
    if times.dtype == object:
        times = np.asarray([np.datetime64(str(t)[:10]) for t in times])
    return rfm_summary(ids, times, money, observation_end, unit_days)


# --------------------------------------------------------------------------------------------------------------
# Fitting helpers
# --------------------------------------------------------------------------------------------------------------


def _unique_rows(*cols: FloatArray) -> tuple[list[FloatArray], npt.NDArray[np.int64]]:
    """Distinct rows of the columns and each row's index among them (a lexsort: faster than np.unique(axis=0))."""
    n = cols[0].shape[0]
    if n == 0:
        return [c[:0] for c in cols], np.zeros(0, dtype=np.int64)
    order = np.lexsort(cols[::-1])
    new = np.zeros(n, dtype=bool)
    new[0] = True
    for c in cols:
        sc = c[order]
        new[1:] |= sc[1:] != sc[:-1]
    group = np.cumsum(new) - 1
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = group
    return [c[order][new] for c in cols], inverse


@dataclass(frozen=True)
class _Groups:
    """Distinct values of the inputs, so that special functions run once per distinct value, not per customer."""

    x: tuple[FloatArray, npt.NDArray[np.int64]]
    tx: tuple[FloatArray, npt.NDArray[np.int64]]
    T: tuple[FloatArray, npt.NDArray[np.int64]]
    x_tx: tuple[list[FloatArray], npt.NDArray[np.int64]]
    x_T: tuple[list[FloatArray], npt.NDArray[np.int64]]

    @classmethod
    def of(cls, x: FloatArray, tx: FloatArray, T: FloatArray) -> _Groups:
        def one(c: FloatArray) -> tuple[FloatArray, npt.NDArray[np.int64]]:
            (v,), inv = _unique_rows(c)
            return v, inv

        return cls(one(x), one(tx), one(T), _unique_rows(x, tx), _unique_rows(x, T))


def _compress(*cols: FloatArray, weights: ArrayLike | None = None) -> tuple[list[FloatArray], FloatArray]:
    """Identical customers become one row with a weight: the likelihood only depends on the distinct rows."""
    n = cols[0].shape[0]
    w = np.ones(n) if weights is None else _f(weights)
    if any(c.shape[0] != n for c in cols) or w.shape[0] != n:
        raise Invalid("frequency: all inputs must have one value per customer")
    uniq, inv = _unique_rows(*cols)
    return uniq, np.bincount(inv, weights=w, minlength=uniq[0].size).astype(np.float64)


def _maximise(
    neg_ll_and_grad: Callable[[FloatArray], tuple[float, FloatArray]], n_params: int, x0: FloatArray | None = None
) -> tuple[FloatArray, float]:
    """Minimise the mean negative log-likelihood over log-parameters; returns parameters and total LL scale."""
    start = np.zeros(n_params) if x0 is None else x0
    res = minimize(
        neg_ll_and_grad, start, jac=True, method="L-BFGS-B", options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-10}
    )
    if not np.all(np.isfinite(res.x)):
        raise Invalid("frequency: the model could not be fitted to these customers")
    return np.exp(res.x), float(res.fun)


def _check_rfm(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    x, tx, t = _f(frequency), _f(recency), _f(T)
    if x.shape != tx.shape or x.shape != t.shape or x.ndim != 1:
        raise Invalid("frequency: frequency, recency and T must be one-dimensional and of equal length")
    if np.any(x < 0) or np.any(tx < 0) or np.any(t < tx) or not np.all(np.isfinite(np.concatenate((x, tx, t)))):
        raise Invalid("recency: need frequency >= 0 and 0 <= recency <= T, all finite")
    if np.any((x == 0) & (tx != 0)):
        raise Invalid("recency: must be 0 for customers without repeat purchases")
    return x, tx, t


# --------------------------------------------------------------------------------------------------------------
# BG/NBD
# --------------------------------------------------------------------------------------------------------------


def _bgnbd_ll(
    params: FloatArray, x: FloatArray, tx: FloatArray, T: FloatArray, groups: _Groups | None = None
) -> tuple[FloatArray, FloatArray]:
    """Per-customer log-likelihood (Fader, Hardie & Lee 2005, eq. 6, in log space) and its gradient with respect
    to (r, alpha, a, b). Terms that depend on x alone are computed once per distinct x."""
    g = groups or _Groups.of(x, tx, T)
    r, alpha, a, b = params
    ux, ix = g.x
    pos_u = ux > 0
    bx1_u = np.where(pos_u, b + ux - 1, 1.0)
    lbab = betaln(a, b)
    a1 = (gammaln(r + ux) - gammaln(r) + r * np.log(alpha))[ix]
    lb1 = (betaln(a, b + ux) - lbab)[ix]
    lb2 = np.where(pos_u, betaln(a + 1, bx1_u) - lbab, -np.inf)[ix]
    la_t = np.log(alpha + g.T[0])[g.T[1]]
    la_tx = np.log(alpha + g.tx[0])[g.tx[1]]
    rx = r + x
    t1 = lb1 - rx * la_t
    t2 = lb2 - rx * la_tx
    both = np.logaddexp(t1, t2)
    ll = a1 + both
    w2 = np.exp(t2 - both)
    w1 = 1.0 - w2
    d_r = (digamma(r + ux) - digamma(r) + np.log(alpha))[ix] - w1 * la_t - w2 * la_tx
    d_alpha = r / alpha - w1 * rx / (alpha + T) - w2 * rx / (alpha + tx)
    common = (digamma(a + b) - digamma(a + b + ux))[ix]
    d_a = common + w2 * (digamma(a + 1) - digamma(a))
    d_b = common - digamma(b) + w1 * digamma(b + ux)[ix] + w2 * np.where(pos_u, digamma(bx1_u), 0.0)[ix]
    return ll, np.stack((d_r, d_alpha, d_a, d_b))


@dataclass(frozen=True)
class BetaGeo:
    """BG/NBD model (Fader, Hardie & Lee 2005, "Counting your customers the easy way", Marketing Science 24(2)).

    Purchases follow a Poisson process with rate ~ Gamma(r, alpha); after each purchase a customer drops out with
    probability p ~ Beta(a, b). Times are in the unit of the data the model was fitted on.
    """

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    n_customers: float = 0.0

    def probability_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArray:
        """P(still a customer | history): 1 / (1 + [x>0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))."""
        x, tx, t = _f(frequency), _f(recency), _f(T)
        pos = x > 0
        log_ratio = (
            np.log(self.a)
            - np.log(np.where(pos, self.b + x - 1, 1.0))
            + (self.r + x) * (np.log(self.alpha + t) - np.log(self.alpha + tx))
        )
        return np.where(pos, 1.0 / (1.0 + np.exp(log_ratio)), 1.0)

    def expected_purchases(
        self, t: float | ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """Expected purchases in the next ``t`` time units given the history (equation 10 of the paper)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        x, tx, big_t, tt = _f(frequency), _f(recency), _f(T), _f(t)
        hyp = hyp2f1(r + x, b + x, a + b + x - 1, tt / (alpha + big_t + tt))
        head = (a + b + x - 1) / (a - 1)
        body = 1.0 - ((alpha + big_t) / (alpha + big_t + tt)) ** (r + x) * hyp
        pos = x > 0
        denom = 1.0 + np.where(
            pos, a / np.where(pos, b + x - 1, 1.0) * ((alpha + big_t) / (alpha + tx)) ** (r + x), 0.0
        )
        return np.asarray(head * body / denom, dtype=np.float64)

    def expected_purchases_new(self, t: float | ArrayLike) -> FloatArray:
        """Expected purchases in (0, t] of a customer just acquired (equation 9)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        tt = _f(t)
        return np.asarray(
            (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + tt)) ** r * hyp2f1(r, b, a + b - 1, tt / (alpha + tt))),
            dtype=np.float64,
        )

    def clv(self, *args: Any, **kwargs: Any) -> FloatArray:
        return _clv(self, *args, **kwargs)


def fit_bgnbd(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None) -> BetaGeo:
    """Maximum-likelihood BG/NBD (Fader, Hardie & Lee 2005) with analytic gradients on log-parameters."""
    x, tx, t = _check_rfm(frequency, recency, T)
    (x, tx, t), w = _compress(x, tx, t, weights=weights)
    total = w.sum()
    if total <= 0:
        raise Invalid("frequency: no customers to fit")
    scale = 10.0 / max(float(t.max()), 1e-12)  # time rescaled for a well-conditioned start; alpha scales back
    sx, st = tx * scale, t * scale
    groups = _Groups.of(x, sx, st)

    def nll(theta: FloatArray) -> tuple[float, FloatArray]:
        params = np.exp(theta)
        ll, grad = _bgnbd_ll(params, x, sx, st, groups)
        return float(-np.sum(w * ll) / total), -np.sum(grad * w, axis=1) * params / total

    p, f = _maximise(nll, 4)
    r, alpha, a, b = p
    alpha /= scale
    ll_total = float(w @ _bgnbd_ll(np.array([r, alpha, a, b]), x, tx, t)[0])
    del f
    return BetaGeo(float(r), float(alpha), float(a), float(b), ll_total, float(total))


# --------------------------------------------------------------------------------------------------------------
# Pareto/NBD
# --------------------------------------------------------------------------------------------------------------


def _log_a0(
    params: FloatArray, x: FloatArray, tx: FloatArray, T: FloatArray, groups: _Groups | None = None
) -> FloatArray:
    """log A0 of Fader & Hardie's note, with the 2F1 argument kept in [0, 1) by choosing max(alpha, beta).

    The Gaussian hypergeometric terms depend on (x, t_x) and (x, T) only: they run once per distinct pair."""
    g = groups or _Groups.of(x, tx, T)
    r, alpha, s, beta = params
    lo, hi = min(alpha, beta), max(alpha, beta)
    gap = hi - lo

    def log_term(xs: FloatArray, ts: FloatArray) -> FloatArray:
        rsx = r + s + xs
        second = r + xs if alpha < beta else np.full_like(xs, s + 1.0)
        return np.asarray(np.log(hyp2f1(rsx, second, rsx + 1.0, gap / (hi + ts))), dtype=np.float64)

    (px, ptx), itx = g.x_tx
    (qx, qt), it = g.x_T
    lp1 = log_term(px, ptx)[itx]
    lp2 = log_term(qx, qt)[it]
    rsx = r + s + x
    lq1, lq2 = np.log(hi + tx), np.log(hi + T)
    terms = np.stack((lp1 + rsx * lq2, lp2 + rsx * lq1))
    signs = np.stack((np.ones_like(x), -np.ones_like(x)))
    out = logsumexp(terms, axis=0, b=signs) - rsx * (lq1 + lq2)
    return np.asarray(out, dtype=np.float64)


def _pnbd_ll(
    params: FloatArray, x: FloatArray, tx: FloatArray, T: FloatArray, grad: bool, groups: _Groups | None = None
) -> tuple[FloatArray, FloatArray]:
    """Per-customer log-likelihood (Fader & Hardie 2005 note, eq. 22) and gradient in log-parameters.

    Everything is analytic except the derivative of log A0 (the Gaussian hypergeometric terms), which is a
    central finite difference in the log-parameters."""
    g = groups or _Groups.of(x, tx, T)
    r, alpha, s, beta = params
    ux, ix = g.x
    a1 = (gammaln(r + ux) - gammaln(r) + r * np.log(alpha) + s * np.log(beta))[ix]
    b_term = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    la0 = _log_a0(params, x, tx, T, g)
    c_term = np.log(s) + la0 - np.log(r + s + x)
    both = np.logaddexp(b_term, c_term)
    ll = a1 + both
    if not grad:
        return ll, np.zeros((4, x.size))
    wb = np.exp(b_term - both)
    wc = 1.0 - wb
    h = 1e-6
    d_la0 = np.zeros((4, x.size))
    for j in range(4):
        up, dn = params.copy(), params.copy()
        up[j] *= np.exp(h)
        dn[j] *= np.exp(-h)
        with np.errstate(invalid="ignore"):
            d_la0[j] = (_log_a0(up, x, tx, T, g) - _log_a0(dn, x, tx, T, g)) / (2 * h)
    d_la0[~np.isfinite(d_la0)] = 0.0  # A0 = 0 (recency = T): its weight wc is 0 too
    g_ = np.zeros((4, x.size))  # derivatives with respect to log-parameters
    g_[0] = (
        r * ((digamma(r + ux) - digamma(r))[ix] + np.log(alpha) - wb * np.log(alpha + T) - wc / (r + s + x))
        + wc * d_la0[0]
    )
    g_[1] = alpha * (r / alpha - wb * (r + x) / (alpha + T)) + wc * d_la0[1]
    g_[2] = s * (np.log(beta) - wb * np.log(beta + T) + wc * (1.0 / s - 1.0 / (r + s + x))) + wc * d_la0[2]
    g_[3] = beta * (s / beta - wb * s / (beta + T)) + wc * d_la0[3]
    return ll, g_


@dataclass(frozen=True)
class ParetoNBD:
    """Pareto/NBD model (Schmittlein, Morrison & Colombo 1987, "Counting your customers", Management Science 33(1);
    likelihood and expressions from Fader & Hardie 2005, "A note on deriving the Pareto/NBD model").

    Purchase rate ~ Gamma(r, alpha), exponential lifetime with dropout rate ~ Gamma(s, beta).
    """

    r: float
    alpha: float
    s: float
    beta: float
    log_likelihood: float
    n_customers: float = 0.0

    def _params(self) -> FloatArray:
        return np.array([self.r, self.alpha, self.s, self.beta])

    def probability_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArray:
        x, tx, t = _f(frequency), _f(recency), _f(T)
        r, alpha, s, beta = self._params()
        la0 = _log_a0(self._params(), x, tx, t)
        z = np.log(s) - np.log(r + s + x) + (r + x) * np.log(alpha + t) + s * np.log(beta + t) + la0
        return np.asarray(np.exp(-np.logaddexp(0.0, z)), dtype=np.float64)

    def expected_purchases(
        self, t: float | ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """Expected purchases in (T, T+t] given the history:
        (r+x)(beta+T)/((alpha+T)(s-1)) (1 - ((beta+T)/(beta+T+t))^(s-1)) P(alive)."""
        x, big_t, tt = _f(frequency), _f(T), _f(t)
        r, alpha, s, beta = self._params()
        pa = self.probability_alive(frequency, recency, T)
        if abs(s - 1.0) < 1e-9:
            factor = np.log((beta + big_t + tt) / (beta + big_t))
        else:
            factor = (1.0 - ((beta + big_t) / (beta + big_t + tt)) ** (s - 1.0)) / (s - 1.0)
        return np.asarray((r + x) * (beta + big_t) / (alpha + big_t) * factor * pa, dtype=np.float64)

    def clv(self, *args: Any, **kwargs: Any) -> FloatArray:
        return _clv(self, *args, **kwargs)


def fit_pareto_nbd(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None
) -> ParetoNBD:
    """Maximum-likelihood Pareto/NBD on compressed customers (see ``_pnbd_ll`` for the gradient)."""
    x, tx, t = _check_rfm(frequency, recency, T)
    (x, tx, t), w = _compress(x, tx, t, weights=weights)
    total = w.sum()
    if total <= 0:
        raise Invalid("frequency: no customers to fit")
    scale = 10.0 / max(float(t.max()), 1e-12)
    sx, st = tx * scale, t * scale
    groups = _Groups.of(x, sx, st)

    def nll(theta: FloatArray) -> tuple[float, FloatArray]:
        ll, g = _pnbd_ll(np.exp(theta), x, sx, st, True, groups)
        if not np.all(np.isfinite(ll)):
            return 1e300, np.zeros(4)
        return float(-np.sum(w * ll) / total), -np.sum(g * w, axis=1) / total

    p, _ = _maximise(nll, 4)
    r, alpha, s, beta = p
    alpha, beta = alpha / scale, beta / scale
    params = np.array([r, alpha, s, beta])
    ll_total = float(w @ _pnbd_ll(params, x, tx, t, False)[0])
    return ParetoNBD(float(r), float(alpha), float(s), float(beta), ll_total, float(total))


# --------------------------------------------------------------------------------------------------------------
# Gamma-Gamma spend
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GammaGamma:
    """Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value curves for customer base
    analysis", Journal of Marketing Research 42(4)); fitted on repeat customers' mean spend."""

    p: float
    q: float
    v: float
    log_likelihood: float
    n_customers: float = 0.0

    def expected_spend(self, frequency: ArrayLike, monetary_value: ArrayLike) -> FloatArray:
        """E[mean spend | x, m]: a weighted average of the customer's mean and the population mean."""
        x, m = _f(frequency), _f(monetary_value)
        w = self.p * x / (self.p * x + self.q - 1.0)
        population = self.v * self.p / (self.q - 1.0)
        return np.asarray((1.0 - w) * population + w * m, dtype=np.float64)


def fit_gamma_gamma(frequency: ArrayLike, monetary_value: ArrayLike, weights: ArrayLike | None = None) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma on customers with at least one repeat purchase and positive spend."""
    x, m = _f(frequency), _f(monetary_value)
    if x.shape != m.shape:
        raise Invalid("monetary_value: one value per customer, as many as frequency")
    w_all = np.ones(x.size) if weights is None else _f(weights)
    sel = (x > 0) & (m > 0)
    if not np.any(sel):
        raise Invalid("monetary_value: no repeat customer with positive spend to fit")
    x, m, w = x[sel], m[sel], w_all[sel]
    total = w.sum()
    ln_m, ln_x = np.log(m), np.log(x)
    ux, ix = _unique_rows(x)
    ux0 = ux[0]

    def nll(theta: FloatArray) -> tuple[float, FloatArray]:
        p, q, v = np.exp(theta)
        pu = p * ux0
        lxv = np.log(x * m + v)
        px = p * x
        ll = (
            (gammaln(pu + q) - gammaln(pu))[ix]
            - gammaln(q)
            + q * np.log(v)
            + (px - 1) * ln_m
            + px * ln_x
            - (px + q) * lxv
        )
        dg = digamma(pu + q)[ix]
        dp = x * (dg - digamma(pu)[ix] + ln_m + ln_x - lxv)
        dq = dg - digamma(q) + np.log(v) - lxv
        dv = q / v - (px + q) / (x * m + v)
        grad = np.stack((dp * p, dq * q, dv * v))
        return float(-np.sum(w * ll) / total), -np.sum(grad * w, axis=1) / total

    x0 = np.array([0.0, 0.0, np.log(max(float(np.median(m)), 1e-6))])
    params, f = _maximise(nll, 3, x0)
    return GammaGamma(float(params[0]), float(params[1]), float(params[2]), -f * float(total), float(total))


# --------------------------------------------------------------------------------------------------------------
# CLV, keep-in-touch, calibration/holdout
# --------------------------------------------------------------------------------------------------------------


class PurchaseModel(Protocol):
    def expected_purchases(
        self, t: float | ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray: ...

    def probability_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArray: ...


def _clv(
    model: PurchaseModel,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    spend: ArrayLike,
    months: int = 12,
    discount_rate: float = 0.01,
    periods_per_month: float = 30.0,
) -> FloatArray:
    """Discounted value of the next ``months``: sum over months i of spend x E[purchases in month i] / (1+d)^i.

    ``spend`` is the expected value per purchase (Gamma-Gamma ``expected_spend``); ``periods_per_month`` is how
    many model time units make a month (30 for days, 4.345 for weeks), as in lifetimes'
    ``customer_lifetime_value``, whose figures this reproduces.
    """
    m = _f(spend)
    total = np.zeros_like(m)
    prev = np.zeros_like(m)
    for i in range(1, months + 1):
        cum = model.expected_purchases(i * periods_per_month, frequency, recency, T)
        total += m * (cum - prev) / (1.0 + discount_rate) ** i
        prev = cum
    return total


def keep_in_touch(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_value: ArrayLike,
    model: BetaGeo | ParetoNBD,
    spend_model: GammaGamma | None = None,
    top_share: float = 0.2,
    alive_below: float = 0.5,
    days_ago: float | None = None,
    drop: float = 0.1,
    months: int = 12,
    discount_rate: float = 0.01,
    periods_per_month: float = 30.0,
) -> npt.NDArray[np.int64]:
    """Indices of valuable customers who are slipping away, most valuable first.

    Valuable: the expected value of the past customer over the next ``months``, had they stayed, is in the top
    ``top_share`` (value = expected purchases if alive x expected spend, discounted). Slipping: P(alive) below
    ``alive_below``, or, with ``days_ago``, P(alive) fell by at least ``drop`` over the last ``days_ago`` time
    units. That fall is exact for customers who have not bought since then: their history was the same with
    T - days_ago. Customers who bought in that window are not slipping by this rule.
    """
    x, tx, t, m = _f(frequency), _f(recency), _f(T), _f(monetary_value)
    spend = spend_model.expected_spend(x, m) if spend_model is not None else m
    alive = model.probability_alive(x, tx, t)
    value = _clv(model, x, tx, t, spend, months, discount_rate, periods_per_month) / np.maximum(alive, 1e-12)
    if not 0 < top_share <= 1:
        raise Invalid("top_share: a share between 0 and 1")
    cut = np.quantile(value, 1.0 - top_share)
    valuable = value >= cut
    slipping = alive < alive_below
    if days_ago is not None:
        quiet = (t - tx) >= days_ago
        then_t = np.maximum(t - days_ago, tx)
        before = model.probability_alive(x, tx, then_t)
        slipping |= quiet & (before - alive >= drop)
    idx = np.flatnonzero(valuable & slipping & (value > 0))
    return idx[np.argsort(-value[idx], kind="stable")]


@dataclass(frozen=True)
class CalibrationReport:
    """Predicted vs actual purchases in a holdout period, by calibration frequency, plus overall errors."""

    frequency: FloatArray  # calibration frequency group (the last group holds that many or more)
    customers: FloatArray
    actual: FloatArray  # mean holdout purchases per customer in the group
    predicted: FloatArray
    total_actual: float
    total_predicted: float
    mae: float  # mean absolute error per customer
    rmse: float
    correlation: float
    params: dict[str, float] = field(default_factory=dict)

    def rows(self) -> list[dict[str, float]]:
        return [
            {"frequency": float(f), "customers": float(c), "actual": float(a), "predicted": float(p)}
            for f, c, a, p in zip(self.frequency, self.customers, self.actual, self.predicted, strict=True)
        ]


def calibration_holdout_report(
    customer_ids: ArrayLike,
    times: ArrayLike,
    calibration_end: Any,
    observation_end: Any = None,
    model: Literal["bgnbd", "pareto_nbd"] = "bgnbd",
    unit_days: float = 1.0,
    max_frequency: int = 7,
) -> CalibrationReport:
    """Fit on purchases up to ``calibration_end``; compare the expected purchases of the holdout period with the
    purchase days each calibration customer actually had in (calibration_end, observation_end]."""
    ids = np.asarray(customer_ids)
    day = _days(times)
    cal_end = int(_days(np.asarray([calibration_end]))[0])
    obs_end = int(day.max()) if observation_end is None else int(_days(np.asarray([observation_end]))[0])
    if obs_end <= cal_end:
        raise Invalid("observation_end: must be after calibration_end")
    cal = day <= cal_end
    rfm = rfm_summary(ids[cal], day[cal], None, cal_end, unit_days)
    hold = (day > cal_end) & (day <= obs_end)
    h_ids, h_day = ids[hold], day[hold]
    pos = np.searchsorted(rfm.customer_ids, h_ids)
    pos = np.minimum(pos, rfm.customer_ids.size - 1)
    known = rfm.customer_ids[pos] == h_ids
    pairs = np.unique(np.column_stack((pos[known], h_day[known])), axis=0)
    actual = np.bincount(pairs[:, 0], minlength=rfm.customer_ids.size).astype(np.float64)
    fitted: BetaGeo | ParetoNBD
    if model == "bgnbd":
        fitted = fit_bgnbd(rfm.frequency, rfm.recency, rfm.T)
    elif model == "pareto_nbd":
        fitted = fit_pareto_nbd(rfm.frequency, rfm.recency, rfm.T)
    else:
        raise Invalid(f"model: unknown model {model!r}")
    horizon = (obs_end - cal_end) / unit_days
    pred = fitted.expected_purchases(horizon, rfm.frequency, rfm.recency, rfm.T)
    group = np.minimum(rfm.frequency, max_frequency).astype(np.int64)
    size = max_frequency + 1
    n = np.bincount(group, minlength=size).astype(np.float64)
    act = np.divide(np.bincount(group, weights=actual, minlength=size), n, out=np.zeros(size), where=n > 0)
    prd = np.divide(np.bincount(group, weights=pred, minlength=size), n, out=np.zeros(size), where=n > 0)
    err = pred - actual
    corr = float(np.corrcoef(pred, actual)[0, 1]) if actual.std() > 0 and pred.std() > 0 else float("nan")
    params = {k: float(v) for k, v in vars(fitted).items() if isinstance(v, float)}
    return CalibrationReport(
        np.arange(size, dtype=np.float64),
        n,
        act,
        prd,
        float(actual.sum()),
        float(pred.sum()),
        float(np.abs(err).mean()),
        float(np.sqrt((err**2).mean())),
        corr,
        params,
    )
