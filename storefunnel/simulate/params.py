"""The planted parameters of the simulated store: every number later analytics are scored against lives here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from storefunnel.models import AgeBand

SCENARIOS = ("baseline", "lead_drop", "conversion_drop", "no_thank_you")
CHANGE_WINDOW_DAYS = 28
CURRENCY = "EUR"
SHOP_URL = "https://shop.example.com"

# GA4 default channel groups, in a fixed order: arrays below are indexed by it.
CHANNELS = (
    "Organic Search",
    "Paid Search",
    "Email",
    "Organic Social",
    "Paid Social",
    "Referral",
    "Direct",
    "Display",
    "Affiliates",
)
CH = {name: i for i, name in enumerate(CHANNELS)}
# Share of the first touch of new people (acquisition), summing to 1.
ACQUISITION_SHARE = np.array([0.26, 0.14, 0.03, 0.15, 0.14, 0.07, 0.13, 0.05, 0.03])
# Channel of a returning visit when it is not the acquisition channel again.
RETURN_SHARE = np.array([0.20, 0.08, 0.20, 0.06, 0.07, 0.03, 0.30, 0.04, 0.02])
RETURN_SAME_CHANNEL = 0.4
# Persuasion each touch of a channel adds toward a first purchase (see PURCHASE_MODEL).
CONVERSION_WEIGHT = np.array([1.0, 1.3, 1.6, 0.5, 0.6, 0.9, 1.1, 0.3, 0.8])
# Channel of the visit that precedes a repeat order.
REPEAT_SHARE = np.array([0.20, 0.10, 0.35, 0.0, 0.0, 0.0, 0.35, 0.0, 0.0])

PURCHASE_MODEL = (
    "A contact is in market with probability in_market_probability (times the buying group's lift). "
    "Each touch k of the journey adds conversion_weight[channel_k] to the contact's persuasion W; "
    "an in-market contact places the first order in the session of the first touch j with "
    "W_j = sum_{k<=j} conversion_weight[channel_k] >= R, where R ~ Gamma(threshold_shape, threshold_scale) "
    "is drawn per contact; that touch becomes 'Checkout Started', followed (after an optional 'Coupon Applied') "
    "by the 'Order Completed' touch. After every touch that does not buy, the journey ends with probability "
    "dropout_per_touch; journeys are capped at max_journey_touches and cut at the anchor. So, for an in-market "
    "contact, P(first order by touch j) = P(j <= journey length) * GammaCDF(W_j; shape, scale): one more touch "
    "of channel c raises W by conversion_weight[c]."
)
IN_MARKET_PROBABILITY = 0.3
THRESHOLD_SHAPE = 7.0
THRESHOLD_SCALE = 1.1
DROPOUT_PER_TOUCH = 0.09
MAX_JOURNEY_TOUCHES = 20
# How many touches come before the one at which a person identifies (gives an email): 0, 1, 2, 3.
PRE_IDENTIFY_TOUCHES_P = np.array([0.45, 0.30, 0.15, 0.10])
EMAIL_CONSENT_P = 0.62
UNSUBSCRIBE_P = 0.05
# Anonymous visitors who never identify, per contact, each with 1..3 touches.
ANONYMOUS_VISITORS_PER_CONTACT = 0.6


@dataclass(frozen=True)
class BGNBD:
    """Repeat purchases (Fader, Hardie & Lee 2005), time unit = days.

    lambda ~ Gamma(shape r, rate alpha): purchase rate while alive; after every repeat purchase the customer
    drops out for good with probability p ~ Beta(a, b). Not after the first order: in the BG/NBD a new
    customer is alive until their first repeat (dropping out at the first order too would be the MBG/NBD).
    """

    r: float = 0.25
    alpha: float = 30.0
    a: float = 0.8
    b: float = 2.4


@dataclass(frozen=True)
class GammaGamma:
    """Order value (Fader, Hardie & Lee 2005 'RFM and CLV'), in euros.

    nu ~ Gamma(shape q, rate gamma) per customer; each order's target basket value z ~ Gamma(shape p, rate nu).
    The mean value is p * gamma / (q - 1).
    """

    p: float = 6.0
    q: float = 4.0
    gamma: float = 30.0


@dataclass(frozen=True)
class BuyingGroup:
    """The one over-performing group: its members are in market lift times as often."""

    gender: str = "female"
    age_band: str = AgeBand.a25_29.value
    country: str = "PT"
    city: str = "Porto"
    lift: float = 3.0


# Countries, with (region, city, weight) inside each; the store is Portuguese and sells across Europe.
COUNTRIES: dict[str, tuple[float, list[tuple[str, str, float]]]] = {
    "PT": (
        0.60,
        [
            ("Porto", "Porto", 0.35),
            ("Lisboa", "Lisboa", 0.40),
            ("Braga", "Braga", 0.12),
            ("Faro", "Faro", 0.07),
            ("Coimbra", "Coimbra", 0.06),
        ],
    ),
    "ES": (0.14, [("Madrid", "Madrid", 0.45), ("Cataluña", "Barcelona", 0.35), ("Galicia", "Vigo", 0.20)]),
    "FR": (0.08, [("Île-de-France", "Paris", 0.6), ("Auvergne-Rhône-Alpes", "Lyon", 0.4)]),
    "DE": (0.07, [("Berlin", "Berlin", 0.5), ("Bayern", "München", 0.5)]),
    "GB": (0.06, [("England", "London", 0.7), ("Scotland", "Edinburgh", 0.3)]),
    "NL": (0.05, [("Noord-Holland", "Amsterdam", 0.6), ("Zuid-Holland", "Rotterdam", 0.4)]),
}
AGE_BANDS = tuple(b.value for b in AgeBand)
AGE_SHARE = np.array([0.02, 0.16, 0.20, 0.26, 0.17, 0.13, 0.06])
GENDERS = ("female", "male", "non_binary")
GENDER_SHARE = np.array([0.60, 0.38, 0.02])
FIRST_NAMES = {
    "female": ("ana", "maria", "beatriz", "ines", "sofia", "laura", "marta", "clara", "julia", "emma"),
    "male": ("joao", "pedro", "tiago", "miguel", "rui", "lucas", "hugo", "paulo", "daniel", "leon"),
    "non_binary": ("alex", "sam", "noa", "kim"),
}
LAST_NAMES = ("silva", "santos", "ferreira", "pereira", "costa", "oliveira", "martins", "garcia", "muller", "smith")

# Catalogue: category -> (products, lowest price, highest price) in euros.
CATEGORIES: dict[str, tuple[int, float, float]] = {
    "Shoes": (30, 39.0, 149.0),
    "Socks": (20, 4.9, 14.9),
    "Bags": (20, 24.0, 189.0),
    "Clothing": (40, 14.9, 99.0),
    "Accessories": (30, 6.9, 49.0),
    "Care": (20, 3.9, 19.9),
    "Gifts": (20, 9.9, 79.0),
    "Home": (20, 12.0, 119.0),
}
CO_PURCHASE_PAIRS = 8
CO_PURCHASE_P_RANGE = (0.35, 0.6)

SHIPPING_FEE = 490
FREE_SHIPPING_FROM = 5000
# code: (share of eligible orders using it, description); eligibility is in the generator.
DISCOUNT_CODES = {
    "WELCOME10": (0.25, "10% off a first order"),
    "3FOR2": (0.5, "cheapest item free when 3 or more items"),
    "SUMMER15": (0.08, "15% off a repeat order"),
}
THANK_YOU_OPEN_P = 0.85

# Paid tactics: (channel, campaign, euros per day at baseline).
PAID_CAMPAIGNS: tuple[tuple[str, str, float], ...] = (
    ("Paid Search", "brand", 18.0),
    ("Paid Search", "generic-shoes", 42.0),
    ("Paid Social", "prospecting-reels", 35.0),
    ("Paid Social", "retargeting", 15.0),
    ("Display", "remarketing-gdn", 12.0),
    ("Affiliates", "awin-partners", 9.0),
)


@dataclass(frozen=True)
class Parameters:
    bgnbd: BGNBD = field(default_factory=BGNBD)
    gamma_gamma: GammaGamma = field(default_factory=GammaGamma)
    group: BuyingGroup = field(default_factory=BuyingGroup)
