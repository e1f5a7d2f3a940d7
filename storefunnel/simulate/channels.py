"""What a touch from each channel looks like on the wire: source, medium, campaign, term, referrer and UTM tags.

Each channel has a few variants; the values follow the GA4 default channel grouping rules, so a classifier
working from source/medium (or the UTM tags in the url) re-derives the planted channel.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlencode

import numpy as np

from storefunnel.simulate.params import CHANNELS


class Variant(NamedTuple):
    source: str
    medium: str
    campaign: str | None
    term: str | None
    referrer: str | None
    utm: bool


VARIANTS: dict[str, tuple[Variant, ...]] = {
    "Organic Search": (
        Variant("google", "organic", None, None, "https://www.google.com/", False),
        Variant("bing", "organic", None, None, "https://www.bing.com/", False),
        Variant("duckduckgo", "organic", None, None, "https://duckduckgo.com/", False),
    ),
    "Paid Search": (
        Variant("google", "cpc", "brand", "shop example porto", "https://www.google.com/", True),
        Variant("google", "cpc", "generic-shoes", "comfortable leather shoes", "https://www.google.com/", True),
    ),
    "Email": (
        Variant("newsletter", "email", "weekly-newsletter", None, None, True),
        Variant("newsletter", "email", "abandoned-cart", None, None, True),
        Variant("newsletter", "email", "welcome", None, None, True),
    ),
    "Organic Social": (
        Variant("instagram", "social", "bio-link", None, "https://l.instagram.com/", True),
        Variant("facebook", "social", "page-post", None, "https://m.facebook.com/", True),
        Variant("tiktok", "social", "profile", None, "https://www.tiktok.com/", True),
    ),
    "Paid Social": (
        Variant("facebook", "paid_social", "prospecting-reels", None, "https://m.facebook.com/", True),
        Variant("instagram", "paid_social", "prospecting-reels", None, "https://l.instagram.com/", True),
        Variant("facebook", "paid_social", "retargeting", None, "https://m.facebook.com/", True),
    ),
    "Referral": (
        Variant("blog.sapatos.pt", "referral", None, None, "https://blog.sapatos.pt/best-shoes-2026", False),
        Variant("reddit.com", "referral", None, None, "https://www.reddit.com/r/malefashionadvice/", False),
        Variant("guia-porto.example", "referral", None, None, "https://guia-porto.example/lojas", False),
    ),
    "Direct": (Variant("(direct)", "(none)", None, None, None, False),),
    "Display": (Variant("gdn", "display", "remarketing-gdn", None, "https://www.noticias.example/", True),),
    "Affiliates": (Variant("awin", "affiliate", "awin-partners", None, "https://www.deals-blog.example/", True),),
}
THANK_YOU = Variant("newsletter", "email", "thank-you", None, None, True)


def _utm(v: Variant) -> str:
    if not v.utm:
        return ""
    q = {"utm_source": v.source, "utm_medium": v.medium}
    if v.campaign:
        q["utm_campaign"] = v.campaign
    if v.term:
        q["utm_term"] = v.term
    return "?" + urlencode(q)


# Flat tables: variant id -> field; per channel the first variant id and how many there are.
_ALL: list[Variant] = [v for name in CHANNELS for v in VARIANTS[name]] + [THANK_YOU]
FIRST_VARIANT = np.cumsum([0] + [len(VARIANTS[n]) for n in CHANNELS[:-1]])
VARIANT_COUNT = np.array([len(VARIANTS[n]) for n in CHANNELS])
THANK_YOU_VARIANT = len(_ALL) - 1
VARIANT_CHANNEL = np.array([CHANNELS.index(n) for n in CHANNELS for _ in VARIANTS[n]] + [CHANNELS.index("Email")])
SOURCE = np.array([v.source for v in _ALL], dtype=object)
MEDIUM = np.array([v.medium for v in _ALL], dtype=object)
CAMPAIGN = np.array([v.campaign for v in _ALL], dtype=object)
TERM = np.array([v.term for v in _ALL], dtype=object)
REFERRER = np.array([v.referrer for v in _ALL], dtype=object)
UTM = np.array([_utm(v) for v in _ALL], dtype=object)


def pick_variants(rng: np.random.Generator, channel: np.ndarray) -> np.ndarray:
    """A variant id for each touch of the given channel ids (uniform among the channel's variants)."""
    return FIRST_VARIANT[channel] + (rng.random(channel.shape) * VARIANT_COUNT[channel]).astype(np.int64)
