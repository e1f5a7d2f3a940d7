"""GA4 default channel grouping: where a touch came from, by Google's published rules.

The rules and the source-category lists are data (``channel_rules.json``) so they can be read, diffed and
updated without touching code; this module compiles them once into predicates evaluated in rule order.
See ``docs/channels.md`` for the rules and for how a page URL and a referrer become source and medium.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

RULES_PATH = Path(__file__).with_name("channel_rules.json")
CHANNELS = (
    "Direct",
    "Cross-network",
    "Paid Shopping",
    "Paid Search",
    "Paid Social",
    "Paid Video",
    "Display",
    "Paid Other",
    "Organic Shopping",
    "Organic Social",
    "Organic Video",
    "Organic Search",
    "Referral",
    "Email",
    "Affiliates",
    "Audio",
    "SMS",
    "Mobile Push Notifications",
    "Unassigned",
)
# Google Ads auto-tagging puts one of these on the landing URL instead of utm parameters.
GOOGLE_ADS_CLICK_IDS = ("gclid", "gbraid", "wbraid")

Fields = Mapping[str, str]
Predicate = Callable[[Fields], bool]


@dataclass(frozen=True)
class Rules:
    ordered: tuple[tuple[str, Predicate], ...]
    categories: Mapping[str, frozenset[str]]
    fallback: str


def _compile(cond: Mapping[str, Any], categories: Mapping[str, frozenset[str]]) -> Predicate:
    """One condition of the JSON rule language: any/all, or a field tested by one operator."""
    if "any" in cond:
        parts = [_compile(c, categories) for c in cond["any"]]
        return lambda f: any(p(f) for p in parts)
    if "all" in cond:
        parts = [_compile(c, categories) for c in cond["all"]]
        return lambda f: all(p(f) for p in parts)
    field = cond["field"]
    if "equals" in cond:
        value = cond["equals"].lower()
        return lambda f: f[field] == value
    if "in" in cond:
        values = frozenset(v.lower() for v in cond["in"])
        return lambda f: f[field] in values
    if "contains" in cond:
        part = cond["contains"].lower()
        return lambda f: part in f[field]
    if "ends_with" in cond:
        suffix = cond["ends_with"].lower()
        return lambda f: f[field].endswith(suffix)
    if "regex" in cond:
        pattern = re.compile(cond["regex"], re.IGNORECASE)
        return lambda f: pattern.match(f[field]) is not None
    if "category" in cond:
        members = categories[cond["category"]]
        return lambda f: source_in(f[field], members)
    raise ValueError(f"unknown condition in channel rules: {cond!r}")


@lru_cache(maxsize=1)
def rules() -> Rules:
    data = json.loads(RULES_PATH.read_text())
    categories = {name: frozenset(s.lower() for s in sources) for name, sources in data["source_categories"].items()}
    ordered = tuple((r["channel"], _compile(r["when"], categories)) for r in data["rules"])
    unknown = {name for name, _ in ordered} - set(CHANNELS)
    if unknown:
        raise ValueError(f"channel rules name unknown channels: {sorted(unknown)}")
    return Rules(ordered, categories, data["fallback"])


def _brand(host: str) -> str | None:
    """``google.co.uk`` -> ``google``: the site name of a bare registrable domain, None for any subdomain.

    Google's lists name sites by bare brand and by the exact hosts they refer from (``l.facebook.com``);
    only a domain with no subdomain falls back to its brand, so ``docs.google.com`` stays a referral.
    """
    labels = host.split(".")
    if len(labels) == 2:
        return labels[0]
    if len(labels) == 3 and len(labels[2]) == 2 and labels[1] in {"co", "com", "ne", "or", "ac", "net", "org"}:
        return labels[0]
    return None


def source_in(source: str, members: frozenset[str]) -> bool:
    if not source:
        return False
    if source in members:
        return True
    brand = _brand(source.removeprefix("www.")) if "." in source else None
    return brand is not None and brand in members


def classify(source: str | None, medium: str | None, campaign: str | None, referrer: str | None = None) -> str:
    """The GA4 default channel of a touch, from its utm source/medium/campaign, else its referrer.

    With no source and no medium, the referrer decides (see :func:`source_medium_from_referrer`);
    with neither, the touch is Direct. Matching is case-insensitive; the first rule that matches wins.
    """
    src = (source or "").strip().lower()
    med = (medium or "").strip().lower()
    if not src and not med:
        src, med = source_medium_from_referrer(referrer)
    fields = {"source": src or "(not set)", "medium": med or "(not set)", "campaign": (campaign or "").strip().lower()}
    compiled = rules()
    for channel, predicate in compiled.ordered:
        if predicate(fields):
            return channel
    return compiled.fallback


def referrer_host(referrer: str | None) -> str:
    if not referrer:
        return ""
    try:
        host = urlsplit(referrer if "//" in referrer else "//" + referrer).hostname or ""
    except ValueError:
        return ""
    return host.lower().removeprefix("www.")


def source_medium_from_referrer(referrer: str | None) -> tuple[str, str]:
    """What GA4 records for an untagged visit: ``(direct)/(none)``, ``<engine>/organic`` or ``<host>/referral``."""
    host = referrer_host(referrer)
    if not host:
        return "(direct)", "(none)"
    if source_in(host, rules().categories["search"]):
        return host, "organic"
    return host, "referral"


@dataclass(frozen=True)
class Attribution:
    source: str | None
    medium: str | None
    campaign: str | None
    content: str | None
    term: str | None
    channel: str


def _first(qs: Mapping[str, list[str]], key: str) -> str | None:
    values = qs.get(key)
    return values[0] if values else None


def attribute(url: str | None, referrer: str | None, campaign: Mapping[str, Any] | None = None) -> Attribution:
    """Cached :func:`attribute_uncached`: a store's traffic repeats the same landing URLs and referrers."""
    tags = tuple(sorted((k, _text(v)) for k, v in campaign.items())) if campaign else ()
    return _attribute_cached(url, referrer, tags)


@lru_cache(maxsize=8192)
def _attribute_cached(url: str | None, referrer: str | None, tags: tuple[tuple[str, str | None], ...]) -> Attribution:
    return attribute_uncached(url, referrer, dict(tags))


def attribute_uncached(url: str | None, referrer: str | None, campaign: Mapping[str, Any] | None = None) -> Attribution:
    """Source, medium, campaign and channel of one touch.

    Tags come from ``context.campaign`` when the client sent it, else from the page URL's ``utm_*``
    parameters (or a Google Ads click id, recorded as google/cpc). A referrer from the page's own host is
    internal navigation and does not count. Untagged touches take source and medium from the referrer.
    """
    tags: dict[str, str | None] = {}
    if campaign:
        tags = {k: _text(campaign.get(k)) for k in ("source", "medium", "name", "content", "term")}
    if not tags.get("source") and not tags.get("medium") and url and "?" in url:
        try:
            qs = parse_qs(urlsplit(url).query)
        except ValueError:
            qs = {}
        tags = {k: _first(qs, f"utm_{k}") for k in ("source", "medium", "content", "term")}
        tags["name"] = _first(qs, "utm_campaign")
        if not tags["source"] and not tags["medium"] and any(k in qs for k in GOOGLE_ADS_CLICK_IDS):
            tags["source"], tags["medium"] = "google", "cpc"
    page_host = referrer_host(url)
    ref = referrer if referrer and referrer_host(referrer) != page_host else None
    source, medium = tags.get("source"), tags.get("medium")
    if not source and not medium:
        source, medium = source_medium_from_referrer(ref)
    channel = classify(source, medium, tags.get("name"))
    return Attribution(source, medium, tags.get("name"), tags.get("content"), tags.get("term"), channel)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None
