"""The simulator's generator: vectorised numpy draws, one chunk of contacts at a time, rows as column arrays.

Nothing here touches the database: a chunk is ``{table: {column: array}}``; times are ``datetime64[us]``
(NaT for none), JSON columns are already serialised. ``alloc(table, n)`` hands out the ids other rows point at.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from scipy import special

from storefunnel.simulate import channels as chv
from storefunnel.simulate import params as P
from storefunnel.simulate.params import CH, Parameters

Table = dict[str, Any]
Chunk = dict[str, Table]
Alloc = Callable[[str, int], np.ndarray]

MINUTE = 1.0 / 1440.0
NONE = np.array(None, dtype=object)  # where() fill value for SQL NULL
US_PER_DAY = 86_400_000_000
# Touch events: (kind, event); the generator works with their codes.
EVENTS = (
    ("page", "Page Viewed"),
    ("track", "Product Viewed"),
    ("track", "Product Added"),
    ("track", "Checkout Started"),
    ("track", "Order Completed"),
    ("track", "Email Opened"),
    ("track", "Email Link Clicked"),
    ("track", "Coupon Applied"),
)
PAGE, VIEW, ADD, CHECKOUT, ORDER, OPEN, CLICK, COUPON = range(8)
EV_KIND = np.array([k for k, _ in EVENTS], dtype=object)
EV_NAME = np.array([e for _, e in EVENTS], dtype=object)
EV_PATH = np.array(["/", None, "/cart", "/checkout", "/checkout/thank-you", None, "/", "/checkout"], dtype=object)
CODES = tuple(P.DISCOUNT_CODES)
# Visits per hour of the day (UTC), lunch and evening peaks.
HOUR_P = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2, 2.5, 2.8, 3, 3.6, 3.6, 3, 2.8, 2.8, 3, 3.4, 4, 4.4, 4.2, 3.2, 2]
)
HOUR_P = HOUR_P / HOUR_P.sum()
WEEKDAY_FACTOR = np.array([1.0, 1.0, 1.0, 1.02, 0.95, 0.9, 1.1])  # Monday..Sunday
CITIES = [(c, region, city, cp * rp) for c, (cp, cities) in P.COUNTRIES.items() for region, city, rp in cities]
CITY_P = np.array([p for *_, p in CITIES])
CITY_P = CITY_P / CITY_P.sum()
CITY_COUNTRY = np.array([c for c, *_ in CITIES], dtype=object)
CITY_REGION = np.array([r for _, r, *_ in CITIES], dtype=object)
CITY_NAME = np.array([c for _, _, c, _ in CITIES], dtype=object)
NOUNS = {
    "Shoes": ("Sneaker", "Loafer", "Boot", "Sandal", "Derby", "Runner"),
    "Socks": ("Sock", "Ankle Sock", "Wool Sock", "Trainer Sock"),
    "Bags": ("Tote", "Backpack", "Crossbody", "Weekender", "Clutch"),
    "Clothing": ("T-shirt", "Shirt", "Sweater", "Dress", "Jacket", "Chinos", "Hoodie"),
    "Accessories": ("Belt", "Scarf", "Cap", "Wallet", "Keyring", "Sunglasses"),
    "Care": ("Shoe Cream", "Protector Spray", "Brush Kit", "Insoles", "Cleaner"),
    "Gifts": ("Gift Card", "Gift Box", "Candle Set", "Notebook", "Mug"),
    "Home": ("Throw", "Cushion", "Vase", "Basket", "Lamp", "Rug"),
}
ADJECTIVES = ("Classic", "Everyday", "Porto", "Douro", "Atlantic", "Linen", "Cork", "Urban", "Soft", "Heritage")
PAIR_CATEGORIES = (
    ("Shoes", "Socks"),
    ("Shoes", "Care"),
    ("Bags", "Accessories"),
    ("Clothing", "Accessories"),
    ("Gifts", "Home"),
    ("Clothing", "Socks"),
    ("Bags", "Care"),
    ("Home", "Gifts"),
)


def expected_repeats(t: np.ndarray, r: float, alpha: float, a: float, b: float) -> np.ndarray:
    """BG/NBD expected repeat purchases in (0, t] for a new customer (Fader, Hardie & Lee 2005, eq. 7)."""
    z = t / (alpha + t)
    hyp = special.hyp2f1(r, b, a + b - 1.0, z)
    return np.asarray((a + b - 1.0) / (a - 1.0) * (1.0 - (alpha / (alpha + t)) ** r * hyp))


def first_orders_lost_without(
    ch: np.ndarray,
    stay: np.ndarray,
    threshold: np.ndarray,
    in_market: np.ndarray,
    before_end: np.ndarray,
    buy: np.ndarray,
) -> np.ndarray:
    """First orders each channel's removal loses, replayed on the same people with the same draws.

    This is the planted answer to the question attribution estimates: had channel c not existed, its touches
    would not have happened (the people it acquired never arrive, its return visits are gone) and every other
    touch stays where it was; a buyer still buys if the other touches' persuasion reaches their threshold
    within the same journey, before the anchor.
    """
    col = np.arange(ch.shape[1])[None, :]
    reach = (col < stay[:, None]) & before_end
    weight = P.CONVERSION_WEIGHT[ch]
    lost = np.zeros(len(P.CHANNELS), dtype=np.int64)
    for c in range(len(P.CHANNELS)):
        other = ch != c
        persuasion = np.cumsum(np.where(other, weight, 0.0), axis=1)
        still = in_market & other[:, 0] & ((persuasion >= threshold[:, None]) & other & reach).any(axis=1)
        lost[c] = int((buy & ~still).sum())
    return lost


def _obj(values: list[Any]) -> np.ndarray:
    """An object array of plain Python values with a trailing None, so index -1 means 'none'."""
    out = np.empty(len(values) + 1, dtype=object)
    out[:-1] = values
    out[-1] = None
    return out


class Simulator:
    """Draws the store. Same seed, sizes, scenario and anchor: the same rows, row for row."""

    def __init__(
        self,
        *,
        contacts: int,
        days: int,
        seed: int,
        scenario: str = "baseline",
        anchor: dt.date,
        chunk_size: int = 10_000,
        params: Parameters | None = None,
    ) -> None:
        self.contacts, self.days, self.seed, self.scenario = contacts, days, seed, scenario
        self.anchor, self.chunk_size = anchor, chunk_size
        self.p = params or Parameters()
        self.rng = np.random.default_rng(seed)
        self.end = float(days)
        self.window_start = float(days - P.CHANGE_WINDOW_DAYS)
        self.start = dt.datetime.combine(anchor, dt.time(), dt.UTC) - dt.timedelta(days=days)
        self.start_us = np.datetime64(self.start.replace(tzinfo=None), "us")
        weekday0 = self.start.weekday()
        day_w = WEEKDAY_FACTOR[(np.arange(days) + weekday0) % 7].copy()
        if scenario == "lead_drop":
            day_w[days - P.CHANGE_WINDOW_DAYS :] *= 0.6
        self.day_p = day_w / day_w.sum()
        self._catalogue()
        self.product_ids: np.ndarray | None = None
        self.order_seq = 0
        self.visitor_seq = 0
        self.stats: dict[str, Any] = {
            "contacts": 0,
            "leads": 0,
            "customers": 0,
            "orders": 0,
            "first_orders": 0,
            "repeat_orders": 0,
            "order_lines": 0,
            "touches": 0,
            "identities": 0,
            "anonymous_visitors": 0,
            "anonymous_touches": 0,
            "abandoned_checkouts_lost_to_scenario": 0,
            "touches_before_first_order": np.zeros(P.MAX_JOURNEY_TOUCHES + 2, dtype=np.int64),
            "group_contacts": 0,
            "group_customers": 0,
            "leads_by_channel": np.zeros(len(P.CHANNELS), dtype=np.int64),
            "acquired_by_channel": np.zeros(len(P.CHANNELS), dtype=np.int64),
            "customers_by_acquisition_channel": np.zeros(len(P.CHANNELS), dtype=np.int64),
            "touches_by_channel": np.zeros(len(P.CHANNELS), dtype=np.int64),
            "first_orders_lost_without": np.zeros(len(P.CHANNELS), dtype=np.int64),
            "leads_in_window": 0,
            "first_orders_in_window": 0,
            "subtotal_sum": 0,
            "revenue": 0,
            "pair_orders": np.zeros(P.CO_PURCHASE_PAIRS, dtype=np.int64),
        }

    # ---- the catalogue, its planted pairs and the spend -------------------------------------------------------
    def _catalogue(self) -> None:
        rng = self.rng
        skus, names, cats, prices = [], [], [], []
        for cat, (count, lo, hi) in P.CATEGORIES.items():
            euros = lo * (hi / lo) ** rng.random(count)
            cents = np.maximum(np.round(euros) * 100 - 10, 290).astype(np.int64)
            nouns = NOUNS[cat]
            for i in range(count):
                skus.append(f"SIM-{cat[:3].upper()}-{i + 1:03d}")
                names.append(f"{ADJECTIVES[(i * 7 + len(cat)) % len(ADJECTIVES)]} {nouns[i % len(nouns)]} {i + 1}")
                cats.append(cat)
            prices.append(cents)
        self.sku = np.array(skus, dtype=object)
        self.pname = np.array(names, dtype=object)
        self.category = np.array(cats, dtype=object)
        self.price = np.concatenate(prices)
        n = len(skus)
        popularity = 1.0 / (rng.permutation(n) + 5.0) ** 0.8
        self.popularity = popularity / popularity.sum()
        self.price_order = np.argsort(self.price, kind="stable")
        self.sorted_price = self.price[self.price_order]
        self.partner = np.full(n, -1, dtype=np.int64)
        self.pair_p = np.zeros(n)
        self.pairs: list[tuple[int, int, float]] = []
        lo_p, hi_p = P.CO_PURCHASE_P_RANGE
        for cat_a, cat_b in PAIR_CATEGORIES[: P.CO_PURCHASE_PAIRS]:
            # Pairs sit where baskets are built (EUR 20-60 lead items): an unreachable pair plants nothing.
            free_a = np.flatnonzero((self.category == cat_a) & (self.partner < 0) & self._priced(2000, 6000))
            free_b = np.flatnonzero((self.category == cat_b) & (self.partner < 0) & self._priced(0, 6000))
            a, b = int(free_a[np.argmax(self.popularity[free_a])]), int(rng.choice(free_b))
            prob = round(float(rng.uniform(lo_p, hi_p)), 2)
            self.partner[a], self.partner[b] = b, a
            self.pair_p[a] = self.pair_p[b] = prob
            self.pairs.append((a, b, prob))
        # The lead item of each pair is a best seller, so the pair shows up in enough baskets to be found.
        leads = [a for a, _, _ in self.pairs]
        ranked = [i for i in np.argsort(-self.popularity, kind="stable").tolist() if i not in leads]
        self.popularity[leads + ranked] = np.sort(self.popularity)[::-1]

    def _priced(self, lo: int, hi: int) -> np.ndarray:
        return np.asarray((self.price >= lo) & (self.price <= hi))

    def products_table(self, workspace_id: int, now: np.datetime64) -> Table:
        n = len(self.sku)
        return {
            "workspace_id": np.full(n, workspace_id, dtype=np.int64),
            "sku": self.sku[:n],
            "name": self.pname,
            "category": self.category,
            "price": self.price,
            "currency": np.full(n, P.CURRENCY, dtype=object),
            "created_at": np.full(n, now, dtype="datetime64[us]"),
        }

    def spend_table(self, workspace_id: int) -> Table:
        """Daily spend per paid campaign: a steady budget with weekday swings and noise, whatever the leads do."""
        rng = self.rng
        days = np.arange(self.days)
        weekday = (days + self.start.weekday()) % 7
        cols: dict[str, list[Any]] = {k: [] for k in ("day", "channel", "campaign", "cost")}
        day0 = np.datetime64(self.start.date(), "D")
        for channel, campaign, euros in P.PAID_CAMPAIGNS:
            cost = euros * 100 * WEEKDAY_FACTOR[weekday] * rng.lognormal(0.0, 0.15, self.days)
            cols["day"].append(day0 + days)
            cols["channel"].append(np.full(self.days, channel, dtype=object))
            cols["campaign"].append(np.full(self.days, campaign, dtype=object))
            cols["cost"].append(np.round(cost).astype(np.int64))
        out: Table = {k: np.concatenate(v) for k, v in cols.items()}
        out["workspace_id"] = np.full(len(out["cost"]), workspace_id, dtype=np.int64)
        out["currency"] = np.full(len(out["cost"]), P.CURRENCY, dtype=object)
        return out

    def _nearest(self, target_cents: np.ndarray, jitter: int = 2) -> np.ndarray:
        """Catalogue index of a product priced near each target (a few ranks of jitter keep baskets varied)."""
        pos = np.searchsorted(self.sorted_price, target_cents)
        pos = np.clip(pos + self.rng.integers(-jitter, jitter + 1, len(target_cents)), 0, len(self.sorted_price) - 1)
        return np.asarray(self.price_order[pos])

    def _popular_near(self, target_cents: np.ndarray, width: int = 6) -> np.ndarray:
        """Catalogue index of a product near each target price, the popular ones more often."""
        pos = np.searchsorted(self.sorted_price, target_cents)
        cand = np.clip(pos[:, None] + np.arange(-width, width + 1)[None, :], 0, len(self.sorted_price) - 1)
        weight = np.cumsum(self.popularity[self.price_order[cand]], axis=1)
        u = self.rng.random(len(target_cents)) * weight[:, -1]
        pick = (weight < u[:, None]).sum(axis=1)
        return np.asarray(self.price_order[cand[np.arange(len(cand)), pick]])

    def _times(self, t_days: np.ndarray) -> np.ndarray:
        return self.start_us + np.round(t_days * US_PER_DAY).astype("timedelta64[us]")

    def _arrivals(self, n: int) -> np.ndarray:
        rng = self.rng
        day = rng.choice(self.days, n, p=self.day_p)
        hour = rng.choice(24, n, p=HOUR_P)
        return np.asarray(day + (hour + rng.random(n) * 0.999) / 24.0)

    # ---- one chunk of contacts ---------------------------------------------------------------------------------
    def chunks(self) -> Iterator[tuple[int, int]]:
        for off in range(0, self.contacts, self.chunk_size):
            yield off, min(self.chunk_size, self.contacts - off)

    def generate_chunk(self, workspace_id: int, off: int, n: int, alloc: Alloc) -> Chunk:
        assert self.product_ids is not None, "write the products first"
        rng, p, st, end = self.rng, self.p, self.stats, self.end
        m_cols = P.MAX_JOURNEY_TOUCHES
        ar = np.arange(n)

        # who they are
        city = rng.choice(len(CITIES), n, p=CITY_P)
        age = rng.choice(len(P.AGE_BANDS), n, p=P.AGE_SHARE)
        gender = rng.choice(len(P.GENDERS), n, p=P.GENDER_SHARE)
        first = np.empty(n, dtype=object)
        for g, gname in enumerate(P.GENDERS):
            sel = gender == g
            first[sel] = np.array(P.FIRST_NAMES[gname], dtype=object)[
                rng.integers(0, len(P.FIRST_NAMES[gname]), sel.sum())
            ]
        last = np.array(P.LAST_NAMES, dtype=object)[rng.integers(0, len(P.LAST_NAMES), n)]
        grp = p.group
        in_group = (
            (np.array(P.GENDERS)[gender] == grp.gender)
            & (np.array(P.AGE_BANDS)[age] == grp.age_band)
            & (CITY_COUNTRY[city] == grp.country)
            & (CITY_NAME[city] == grp.city)
        )
        t_lead = self._arrivals(n)
        k_id = rng.choice(len(P.PRE_IDENTIFY_TOUCHES_P), n, p=P.PRE_IDENTIFY_TOUCHES_P)
        consent = rng.random(n) < P.EMAIL_CONSENT_P

        # the journey: channels, drop-out, persuasion
        col = np.arange(m_cols)[None, :]
        acq = rng.choice(len(P.CHANNELS), n, p=P.ACQUISITION_SHARE)
        ret = rng.choice(len(P.CHANNELS), (n, m_cols), p=P.RETURN_SHARE / P.RETURN_SHARE.sum())
        ch = np.where(rng.random((n, m_cols)) < P.RETURN_SAME_CHANNEL, acq[:, None], ret)
        ch[:, 0] = acq
        no_email = (ch == CH["Email"]) & (col >= 1) & ~(consent[:, None] & (col > k_id[:, None]))
        ch[no_email] = CH["Direct"]
        persuasion = np.cumsum(P.CONVERSION_WEIGHT[ch], axis=1)
        stay = np.minimum(m_cols, rng.geometric(P.DROPOUT_PER_TOUCH, n))
        p_market = np.minimum(1.0, P.IN_MARKET_PROBABILITY * np.where(in_group, grp.lift, 1.0))
        in_market = rng.random(n) < p_market
        threshold = rng.gamma(P.THRESHOLD_SHAPE, P.THRESHOLD_SCALE, n)
        hit = persuasion >= threshold[:, None]
        jb = hit.argmax(axis=1)
        plan_buy = in_market & hit.any(axis=1) & (jb < stay)
        k_id = np.where(plan_buy, np.minimum(k_id, jb), k_id)
        length = np.where(plan_buy, jb + 1, np.maximum(stay, k_id + 1))

        # when: anonymous touches shortly before identifying, then gaps of a few days
        pre_gap = rng.exponential(0.4, (n, m_cols))
        post_gap = rng.exponential(1.0, (n, m_cols)) * rng.gamma(2.0, 2.0, n)[:, None]
        gap = np.where(col <= k_id[:, None], pre_gap, post_gap)
        gap[:, 0] = 0.0
        cum = np.cumsum(gap, axis=1)
        t = t_lead[:, None] + cum - cum[ar, k_id][:, None]
        early = t[:, 0] < 0
        if early.any():
            scale = np.ones(n)
            scale[early] = t_lead[early] / (t_lead[early] - t[early, 0])
            t = np.where(col < k_id[:, None], t_lead[:, None] - (t_lead[:, None] - t) * scale[:, None], t)
        t_order = t[ar, jb] + 4 * MINUTE
        buy = plan_buy & (t_order < end)
        lost = np.zeros(n, dtype=bool)
        if self.scenario == "conversion_drop":
            lost = buy & (t_order >= self.window_start) & (rng.random(n) < 0.4)
            buy &= ~lost
        st["first_orders_lost_without"] += first_orders_lost_without(
            ch, stay, threshold, in_market, t + 4 * MINUTE < end, buy
        )
        keep = (col < length[:, None]) & (t < end)
        variant = chv.pick_variants(rng, ch)
        u = rng.random((n, m_cols))
        event = np.where(u < 0.5, PAGE, np.where(u < 0.85, VIEW, ADD))
        event = np.where(ch == CH["Email"], np.where(u < 0.55, OPEN, CLICK), event)
        checkout = (buy | lost)[:, None] & (col == jb[:, None])
        event[checkout] = CHECKOUT
        product = rng.choice(len(self.sku), (n, m_cols), p=self.popularity)
        product = np.where((event == VIEW) | (event == ADD), product, -1)
        lead_channel = ch[ar, k_id]

        # ids of this chunk's contacts; web touches carry the contact's device id
        cid = alloc("contacts", n)
        cid_obj = _obj(cid.tolist())
        anon_obj = _obj([f"sim-a{off + i:08d}" for i in range(n)])

        # orders: first orders, then BG/NBD repeats, with Gamma-Gamma basket values
        cust = np.flatnonzero(buy)
        nc = len(cust)
        t_first = t_order[cust]
        bg, gg = p.bgnbd, p.gamma_gamma
        lam = np.maximum(rng.gamma(bg.r, 1.0 / bg.alpha, nc), 1e-12)
        drop = rng.beta(bg.a, bg.b, nc)
        # repeats until the drop-out that follows a repeat: 1, 2, ... (the BG/NBD allows none after the first)
        nrep = rng.geometric(np.maximum(drop, 1e-9))
        bound = np.ceil(3.0 * lam * (end - t_first) + 10).astype(np.int64)
        nrep = np.minimum(nrep, bound)
        owner = np.repeat(np.arange(nc), nrep)
        steps = rng.exponential(1.0, len(owner)) / lam[owner]
        csum = np.cumsum(steps)
        starts = np.cumsum(nrep) - nrep
        base = np.concatenate([[0.0], csum])[starts]
        t_rep = t_first[owner] + csum - np.repeat(base, nrep)
        ok = t_rep < end
        owner, t_rep = owner[ok], t_rep[ok]
        o_cust = np.concatenate([np.arange(nc), owner])
        o_t = np.concatenate([t_first, t_rep])
        o_first = np.concatenate([np.ones(nc, dtype=bool), np.zeros(len(owner), dtype=bool)])
        sort = np.lexsort((o_t, o_cust))
        o_cust, o_t, o_first = o_cust[sort], o_t[sort], o_first[sort]
        o_contact = cust[o_cust]
        no = len(o_t)
        nu = rng.gamma(gg.q, 1.0 / gg.gamma, nc)
        z_cents = rng.gamma(gg.p, 1.0 / nu[o_cust]) * 100.0

        # basket: a primary product near part of the value, its planted partner, fillers for the rest
        p1 = self._popular_near(z_cents * rng.uniform(0.35, 0.9, no))
        comp = self.partner[p1]
        has_c = (comp >= 0) & (rng.random(no) < self.pair_p[p1])
        rem = z_cents - self.price[p1] - np.where(has_c, self.price[np.maximum(comp, 0)], 0)
        two = rem > 12_000
        f_target = np.where(two, rem / 2.0, rem)
        double_qty = rng.random(no) < 0.15
        f1 = self._nearest(np.where(double_qty, f_target / 2.0, f_target))
        f2 = self._nearest(f_target)
        has_f1 = (rem >= 500) & (f1 != p1) & (f1 != comp)
        has_f2 = two & has_f1 & (f2 != p1) & (f2 != comp) & (f2 != f1)
        slot_prod = np.stack([p1, np.maximum(comp, 0), f1, f2], axis=1)
        slot_qty = np.stack([np.ones(no), np.ones(no), np.where(double_qty, 2, 1), np.ones(no)], axis=1).astype(
            np.int64
        )
        slot_on = np.stack([np.ones(no, dtype=bool), has_c, has_f1, has_f2], axis=1)
        line_total = np.where(slot_on, self.price[slot_prod] * slot_qty, 0)
        subtotal = line_total.sum(axis=1)
        items = np.where(slot_on, slot_qty, 0).sum(axis=1)
        cheapest = np.where(slot_on, self.price[slot_prod], np.iinfo(np.int64).max).min(axis=1)
        uc = rng.random(no)
        code = np.full(no, -1)
        code[o_first & (uc < P.DISCOUNT_CODES["WELCOME10"][0])] = 0
        code[(code < 0) & (items >= 3) & (rng.random(no) < P.DISCOUNT_CODES["3FOR2"][0])] = 1
        code[(code < 0) & ~o_first & (uc < P.DISCOUNT_CODES["SUMMER15"][0])] = 2
        discount = np.select(
            [code == 0, code == 1, code == 2],
            [np.round(subtotal * 0.10), cheapest, np.round(subtotal * 0.15)],
            0,
        ).astype(np.int64)
        shipping = np.where(subtotal - discount < P.FREE_SHIPPING_FROM, P.SHIPPING_FEE, 0).astype(np.int64)
        total = subtotal - discount + shipping
        oid = alloc("orders", no)
        ext = [f"SIM-{self.order_seq + i + 1:08d}" for i in range(no)]
        self.order_seq += no

        # touches around orders: the buying session's variant, repeat visits, coupons, thank-you emails
        first_variant = variant[cust, jb[cust]]
        rep_ch = rng.choice(len(P.CHANNELS), no, p=P.REPEAT_SHARE / P.REPEAT_SHARE.sum())
        rep_ch = np.where((rep_ch == CH["Email"]) & ~consent[o_contact], CH["Direct"], rep_ch)
        o_variant = chv.pick_variants(rng, rep_ch)
        o_variant[o_first] = first_variant
        visit_t = o_t - rng.uniform(3, 40, no) * MINUTE
        coupon = code >= 0
        ty = (rng.random(no) < P.THANK_YOU_OPEN_P) & (self.scenario != "no_thank_you")
        ty_t = o_t + 0.01 + rng.exponential(0.3, no)
        ty &= ty_t < end

        # anonymous visitors who never identify
        nv = round(P.ANONYMOUS_VISITORS_PER_CONTACT * n)
        v_touches = rng.integers(1, 4, nv)
        v_owner = np.repeat(np.arange(nv), v_touches)
        v_step = rng.exponential(0.02, len(v_owner))
        v_cs = np.cumsum(v_step)
        v_base = np.concatenate([[0.0], v_cs])[np.cumsum(v_touches) - v_touches]
        v_t = self._arrivals(nv)[v_owner] + v_cs - np.repeat(v_base, v_touches)
        v_ch = rng.choice(len(P.CHANNELS), nv, p=P.ACQUISITION_SHARE)
        v_ch = np.where(v_ch == CH["Email"], CH["Direct"], v_ch)[v_owner]
        v_event = np.where(rng.random(len(v_owner)) < 0.6, PAGE, VIEW)
        v_prod = np.where(v_event == VIEW, rng.choice(len(self.sku), len(v_owner), p=self.popularity), -1)
        v_ok = v_t < end
        v_anon = _obj([f"sim-v{self.visitor_seq + i:08d}" for i in range(nv)])
        self.visitor_seq += nv

        # assemble all touches: (contact idx, anon obj idx, time, event, variant, product, order idx, coupon code)
        jr, jc = np.nonzero(keep)
        parts = [
            (
                jr,
                np.where(event[jr, jc] == OPEN, -1, jr),
                t[jr, jc],
                event[jr, jc],
                variant[jr, jc],
                product[jr, jc],
                np.full(len(jr), -1),
                np.full(len(jr), -1),
            ),
        ]
        rep = ~o_first
        ri = np.flatnonzero(rep)
        parts.append(
            (
                o_contact[ri],
                o_contact[ri],
                visit_t[ri],
                np.full(len(ri), VIEW),
                o_variant[ri],
                p1[ri],
                np.full(len(ri), -1),
                np.full(len(ri), -1),
            )
        )
        ci = np.flatnonzero(coupon)
        parts.append(
            (
                o_contact[ci],
                o_contact[ci],
                o_t[ci] - MINUTE,
                np.full(len(ci), COUPON),
                o_variant[ci],
                np.full(len(ci), -1),
                np.full(len(ci), -1),
                code[ci],
            )
        )
        parts.append(
            (o_contact, o_contact, o_t, np.full(no, ORDER), o_variant, np.full(no, -1), np.arange(no), np.full(no, -1))
        )
        ti = np.flatnonzero(ty)
        parts.append(
            (
                o_contact[ti],
                np.full(len(ti), -1),
                ty_t[ti],
                np.full(len(ti), OPEN),
                np.full(len(ti), chv.THANK_YOU_VARIANT),
                np.full(len(ti), -1),
                ti,
                np.full(len(ti), -1),
            )
        )
        touches = self._touch_table(workspace_id, parts, cid_obj, anon_obj, ext, total)
        vi = np.flatnonzero(v_ok)
        anon_touches = self._touch_table(
            workspace_id,
            [
                (
                    np.full(len(vi), -1),
                    v_owner[vi],
                    v_t[vi],
                    v_event[vi],
                    chv.pick_variants(rng, v_ch[vi]),
                    v_prod[vi],
                    np.full(len(vi), -1),
                    np.full(len(vi), -1),
                )
            ],
            _obj([]),
            v_anon,
            ext,
            total,
        )

        # contacts: stage from their orders
        last_order = np.full(n, -1.0)
        np.maximum.at(last_order, o_contact, o_t)
        is_cust = last_order >= 0
        stage = np.where(is_cust, np.where(last_order >= end - 180, "keeping_in_touch", "lapsed"), "conversion")
        stage_t = np.where(is_cust, last_order, t_lead)
        unsub = consent & (rng.random(n) < P.UNSUBSCRIBE_P)
        unsub_t = t_lead + rng.random(n) * (end - t_lead)
        lead_ts = self._times(t_lead)
        nat = np.datetime64("NaT", "us")
        ws = np.full(n, workspace_id, dtype=np.int64)
        contacts: Table = {
            "id": cid,
            "workspace_id": ws,
            "email": np.array(
                [f"{a}.{b}.{off + i}@example.com" for i, (a, b) in enumerate(zip(first, last, strict=True))],
                dtype=object,
            ),
            "external_id": np.array([f"sim-{off + i:08d}" for i in range(n)], dtype=object),
            "first_name": np.array([s.capitalize() for s in first], dtype=object),
            "last_name": np.array([s.capitalize() for s in last], dtype=object),
            "country": CITY_COUNTRY[city],
            "region": CITY_REGION[city],
            "city": CITY_NAME[city],
            "age_band": np.array(P.AGE_BANDS, dtype=object)[age],
            "gender": np.array(P.GENDERS, dtype=object)[gender],
            "traits": ["{}"] * n,
            "email_consent": consent,
            "consent_source": np.where(
                consent, np.where(buy & (k_id == jb), "checkout", "signup_form").astype(object), NONE
            ),
            "consent_at": np.where(consent, lead_ts, nat),
            "unsubscribed_at": np.where(unsub, self._times(unsub_t), nat),
            "created_at": lead_ts,
            "updated_at": lead_ts,
            "lead_at": lead_ts,
            "lead_channel": np.array(P.CHANNELS, dtype=object)[lead_channel],
        }
        contact_stages: Table = {
            "contact_id": cid,
            "workspace_id": ws,
            "stage": stage.astype(object),
            "stage_at": self._times(stage_t),
        }
        identities: Table = {
            "workspace_id": ws,
            "anonymous_id": anon_obj[:-1],
            "contact_id": cid,
            "created_at": lead_ts,
        }
        o_times = self._times(o_t)
        orders: Table = {
            "id": oid,
            "workspace_id": np.full(no, workspace_id, dtype=np.int64),
            "contact_id": cid[o_contact],
            "source": np.full(no, "simulator", dtype=object),
            "external_id": np.array(ext, dtype=object),
            "placed_at": o_times,
            "currency": np.full(no, P.CURRENCY, dtype=object),
            "subtotal": subtotal,
            "discount": discount,
            "shipping": shipping,
            "tax": np.zeros(no, dtype=np.int64),
            "total": total,
            "status": np.full(no, "paid", dtype=object),
            "discount_codes": [f'["{CODES[c]}"]' if c >= 0 else "[]" for c in code.tolist()],
            "properties": [f'{{"channel": "{P.CHANNELS[c]}"}}' for c in chv.VARIANT_CHANNEL[o_variant].tolist()],
            "created_at": o_times,
            "updated_at": o_times,
        }
        lo, ls = np.nonzero(slot_on)
        lp = slot_prod[lo, ls]
        lines: Table = {
            "workspace_id": np.full(len(lo), workspace_id, dtype=np.int64),
            "order_id": oid[lo],
            "product_id": self.product_ids[lp],
            "sku": self.sku[lp],
            "name": self.pname[lp],
            "quantity": slot_qty[lo, ls],
            "unit_price": self.price[lp],
            "discount": np.zeros(len(lo), dtype=np.int64),
            "total": line_total[lo, ls],
        }

        # the truth this chunk contributes
        st["contacts"] += n
        st["leads"] += n
        st["customers"] += nc
        st["orders"] += no
        st["first_orders"] += nc
        st["repeat_orders"] += no - nc
        st["order_lines"] += len(lo)
        st["touches"] += len(touches["kind"]) + len(anon_touches["kind"])
        st["identities"] += n
        st["anonymous_visitors"] += nv
        st["anonymous_touches"] += len(anon_touches["kind"])
        st["abandoned_checkouts_lost_to_scenario"] += int(lost.sum())
        before = jb[cust] + 1 + coupon[o_first].astype(np.int64)
        st["touches_before_first_order"] += np.bincount(before, minlength=P.MAX_JOURNEY_TOUCHES + 2)
        st["group_contacts"] += int(in_group.sum())
        st["group_customers"] += int((in_group & buy).sum())
        st["leads_by_channel"] += np.bincount(lead_channel, minlength=len(P.CHANNELS))
        st["acquired_by_channel"] += np.bincount(acq, minlength=len(P.CHANNELS))
        st["customers_by_acquisition_channel"] += np.bincount(acq[cust], minlength=len(P.CHANNELS))
        all_variants = np.concatenate([touches["_variant"], anon_touches["_variant"]])
        st["touches_by_channel"] += np.bincount(chv.VARIANT_CHANNEL[all_variants], minlength=len(P.CHANNELS))
        st["leads_in_window"] += int((t_lead >= self.window_start).sum())
        st["first_orders_in_window"] += int((t_first >= self.window_start).sum())
        st["subtotal_sum"] += int(subtotal.sum())
        st["revenue"] += int(total.sum())
        in_order = np.zeros((no, len(self.sku)), dtype=bool) if no * len(self.sku) < 50_000_000 else None
        if in_order is not None:
            in_order[lo, lp] = True
            for k, (a, b, _) in enumerate(self.pairs):
                st["pair_orders"][k] += int((in_order[:, a] & in_order[:, b]).sum())
        del touches["_variant"], anon_touches["_variant"]
        return {
            "contacts": contacts,
            "contact_stages": contact_stages,
            "identities": identities,
            "orders": orders,
            "order_lines": lines,
            "touches": _concat(touches, anon_touches),
        }

    def _touch_table(
        self,
        workspace_id: int,
        parts: Sequence[tuple[Any, ...]],
        cid_obj: np.ndarray,
        anon_obj: np.ndarray,
        ext: list[str],
        total: np.ndarray,
    ) -> Table:
        cols = [np.concatenate(x) for x in zip(*parts, strict=True)]
        # Rows in (contact, time) order: realistic ids and append-only index inserts.
        order_rows = np.lexsort((cols[2], cols[0]))
        cols = [c[order_rows] for c in cols]
        t = cols[2].astype(float)
        contact, anon, event, variant, product, order, code = (c.astype(np.int64) for i, c in enumerate(cols) if i != 2)
        assert self.product_ids is not None
        nt = len(t)
        path = EV_PATH[event].copy()
        cat_pages = (event == PAGE) & (product < 0) & (np.arange(nt) % 3 == 0)
        path[cat_pages] = (
            "/collections/"
            + np.array([c.lower() for c in P.CATEGORIES], dtype=object)[np.arange(nt)[cat_pages] % len(P.CATEGORIES)]
        )
        has_p = product >= 0
        path[has_p] = "/products/" + np.char.lower(self.sku[product[has_p]].astype(str)).astype(object)
        url = np.where(event == OPEN, NONE, P.SHOP_URL + path.astype(str).astype(object) + chv.UTM[variant])
        props = np.full(nt, "{}", dtype=object)
        pi = np.flatnonzero(has_p)
        pids = self.product_ids[product[pi]].tolist()
        props[pi] = [
            f'{{"product_id": {i}, "sku": "{s}", "category": "{c}", "price": {pr / 100:.2f}}}'
            for i, s, c, pr in zip(
                pids, self.sku[product[pi]], self.category[product[pi]], self.price[product[pi]], strict=True
            )
        ]
        oi = np.flatnonzero((event == ORDER) & (order >= 0))
        props[oi] = [
            f'{{"order_id": "{ext[o]}", "total": {tot}, "revenue": {tot / 100:.2f}, "currency": "EUR"}}'
            for o, tot in zip(order[oi].tolist(), total[order[oi]].tolist(), strict=True)
        ]
        ci = np.flatnonzero(code >= 0)
        props[ci] = [json.dumps({"coupon": CODES[c]}) for c in code[ci].tolist()]
        ti = np.flatnonzero((event == OPEN) & (variant == chv.THANK_YOU_VARIANT))
        props[ti] = [f'{{"order_id": "{ext[o]}", "flow": "thank_you"}}' for o in order[ti].tolist()]
        return {
            "workspace_id": np.full(nt, workspace_id, dtype=np.int64),
            "contact_id": cid_obj[contact],
            "anonymous_id": anon_obj[anon],
            "occurred_at": self._times(t),
            "kind": EV_KIND[event],
            "event": EV_NAME[event],
            "channel": np.array(P.CHANNELS, dtype=object)[chv.VARIANT_CHANNEL[variant]],
            "source": chv.SOURCE[variant],
            "medium": chv.MEDIUM[variant],
            "campaign": chv.CAMPAIGN[variant],
            "term": chv.TERM[variant],
            "url": url,
            "referrer": np.where(event == OPEN, NONE, chv.REFERRER[variant]),
            "properties": props,
            "_variant": variant,
        }

    # ---- the planted truth -------------------------------------------------------------------------------------
    def truth(self) -> dict[str, Any]:
        st, p = self.stats, self.p
        hist = st["touches_before_first_order"]
        n_first = int(hist.sum())
        group_rate = st["group_customers"] / max(st["group_contacts"], 1)
        other_rate = (st["customers"] - st["group_customers"]) / max(st["contacts"] - st["group_contacts"], 1)
        window_end = dt.datetime.combine(self.anchor, dt.time(), dt.UTC)
        gg = p.gamma_gamma
        return {
            "seed": self.seed,
            "scenario": self.scenario,
            "anchor": window_end.isoformat(),
            "start": self.start.isoformat(),
            "days": self.days,
            "currency": P.CURRENCY,
            "change_window": (
                None
                if self.scenario == "baseline"
                else {
                    "start": (window_end - dt.timedelta(days=P.CHANGE_WINDOW_DAYS)).isoformat(),
                    "end": window_end.isoformat(),
                    "effect": {
                        "lead_drop": "new leads per day x0.6 (anonymous visits too); spend unchanged",
                        "conversion_drop": "each first order falling in the window is lost with probability 0.4 "
                        "(the contact stops at 'Checkout Started')",
                        "no_thank_you": "no thank-you email after any order, for the whole period",
                    }[self.scenario],
                }
            ),
            "counts": {
                k: int(st[k])
                for k in (
                    "contacts",
                    "leads",
                    "customers",
                    "orders",
                    "first_orders",
                    "repeat_orders",
                    "order_lines",
                    "touches",
                    "identities",
                    "anonymous_visitors",
                    "anonymous_touches",
                    "abandoned_checkouts_lost_to_scenario",
                    "leads_in_window",
                    "first_orders_in_window",
                )
            }
            | {"products": len(self.sku), "spend_rows": self.days * len(P.PAID_CAMPAIGNS)},
            "channels": {
                name: {
                    "acquisition_share": float(P.ACQUISITION_SHARE[i]),
                    "return_share": float(P.RETURN_SHARE[i] / P.RETURN_SHARE.sum()),
                    "conversion_weight": float(P.CONVERSION_WEIGHT[i]),
                    "relative_conversion_strength": float(P.CONVERSION_WEIGHT[i] / P.CONVERSION_WEIGHT.mean()),
                    "acquired": int(st["acquired_by_channel"][i]),
                    "leads": int(st["leads_by_channel"][i]),
                    "customers_by_acquisition": int(st["customers_by_acquisition_channel"][i]),
                    "touches": int(st["touches_by_channel"][i]),
                    "first_orders_lost_without": int(st["first_orders_lost_without"][i]),
                    "daily_spend_euros": sum(e for c, _, e in P.PAID_CAMPAIGNS if c == name),
                }
                for i, name in enumerate(P.CHANNELS)
            },
            "paid_campaigns": [{"channel": c, "campaign": k, "daily_budget_euros": e} for c, k, e in P.PAID_CAMPAIGNS],
            "purchase_model": {
                "description": P.PURCHASE_MODEL,
                "in_market_probability": P.IN_MARKET_PROBABILITY,
                "threshold_shape": P.THRESHOLD_SHAPE,
                "threshold_scale": P.THRESHOLD_SCALE,
                "dropout_per_touch": P.DROPOUT_PER_TOUCH,
                "max_journey_touches": P.MAX_JOURNEY_TOUCHES,
                "return_same_channel": P.RETURN_SAME_CHANNEL,
                "email_needs_consent_and_identification": True,
                "pre_identify_touches_p": P.PRE_IDENTIFY_TOUCHES_P.tolist(),
                "email_consent_p": P.EMAIL_CONSENT_P,
                "stitched": "touches before identification carry the device anonymous_id and the contact_id "
                "(stitched through the identities row); anonymous visitors who never identify have no contact_id",
            },
            "touches_before_first_order": {
                "definition": "touches of the contact strictly before the first order's placed_at "
                "(the 'Order Completed' touch is at placed_at)",
                "histogram": {str(k): int(v) for k, v in enumerate(hist) if v},
                "share_5_to_12": float(hist[5:13].sum() / max(n_first, 1)),
                "mean": float((np.arange(len(hist)) * hist).sum() / max(n_first, 1)),
            },
            "buying_group": {
                "gender": p.group.gender,
                "age_band": p.group.age_band,
                "country": p.group.country,
                "city": p.group.city,
                "lift": p.group.lift,
                "lift_applies_to": "in_market_probability, so P(contact becomes a customer) x lift",
                "contacts": int(st["group_contacts"]),
                "customers": int(st["group_customers"]),
                "realised_conversion": group_rate,
                "others_realised_conversion": other_rate,
            },
            "co_purchase_pairs": [
                {
                    "sku_a": str(self.sku[a]),
                    "sku_b": str(self.sku[b]),
                    "probability": prob,
                    "meaning": "when either is an order's primary product, the other is added with this probability",
                    "orders_with_both": int(st["pair_orders"][k]),
                }
                for k, (a, b, prob) in enumerate(self.pairs)
            ],
            "bgnbd": {
                "r": p.bgnbd.r,
                "alpha": p.bgnbd.alpha,
                "a": p.bgnbd.a,
                "b": p.bgnbd.b,
                "time_unit": "day",
                "note": "repeat orders after the first; the first order starts each customer's clock",
            },
            "gamma_gamma": {
                "p": gg.p,
                "q": gg.q,
                "gamma": gg.gamma,
                "unit": "euro",
                "mean_order_value": gg.p * gg.gamma / (gg.q - 1.0),
                "note": "z is the target basket value; realised subtotals use catalogue prices near z, "
                "plus any planted companion item",
                "realised_mean_subtotal": st["subtotal_sum"] / 100.0 / max(st["orders"], 1),
            },
            "orders": {
                "total_formula": "total = sum(line totals) - discount + shipping; tax 0 (prices include VAT)",
                "shipping_fee_cents": P.SHIPPING_FEE,
                "free_shipping_from_cents": P.FREE_SHIPPING_FROM,
                "discount_codes": {k: {"use_p": v[0], "rule": v[1]} for k, v in P.DISCOUNT_CODES.items()},
                "thank_you_open_p": 0.0 if self.scenario == "no_thank_you" else P.THANK_YOU_OPEN_P,
                "revenue_cents": int(st["revenue"]),
            },
            "markers": {
                "contacts.external_id": "sim-%",
                "orders.source": "simulator",
                "products.sku": "SIM-%",
                "touches.anonymous_id": "sim-%",
            },
        }


def _concat(a: Table, b: Table) -> Table:
    out: Table = {}
    for k, v in a.items():
        w = b[k]
        if isinstance(v, list) or isinstance(w, list):
            out[k] = list(v) + list(w)
        else:
            out[k] = np.concatenate([v, w])
    return out


def bgnbd_expected(t: np.ndarray, params: Parameters | None = None) -> np.ndarray:
    """Expected repeat orders for customers observed ``t`` days after their first order, at the planted values."""
    bg = (params or Parameters()).bgnbd
    return expected_repeats(np.asarray(t, dtype=float), bg.r, bg.alpha, bg.a, bg.b)
