"""The GA4 default channel grouping, rule by rule, in Google's order: each rule with examples it must
match and near-misses it must leave to a later rule."""

from __future__ import annotations

import pytest

from storefunnel.ingest.channels import CHANNELS, attribute, classify, rules, source_medium_from_referrer

# (channel, [(source, medium, campaign) that match], [(source, medium, campaign) that must not get this channel])
RULES: list[
    tuple[str, list[tuple[str | None, str | None, str | None]], list[tuple[str | None, str | None, str | None]]]
] = [
    ("Direct", [("(direct)", "(none)", None), ("(DIRECT)", "(not set)", None)], [("(direct)", "cpc", None)]),
    (
        "Cross-network",
        [("google", "cpc", "pmax cross-network"), ("x", "y", "Cross-Network-Q3")],
        [("google", "cpc", "crossnetwork")],
    ),
    (
        "Paid Shopping",
        [("amazon", "cpc", None), ("Google Shopping", "paid", None), ("newsletter", "ppc", "summer shop")],
        [("amazon", "referral", None), ("google", "cpc", "workshop")],
    ),
    (
        "Paid Search",
        [
            ("google", "cpc", None),
            ("bing", "ppc", None),
            ("DuckDuckGo", "paidsearch", None),
            ("baidu", "retargeting", None),
        ],
        [("google", "organic", None), ("facebook", "cpc", None)],
    ),
    (
        "Paid Social",
        [("facebook", "paid_social", None), ("instagram", "cpc", None), ("l.facebook.com", "paid", None)],
        [("facebook", "social", None), ("youtube", "cpc", None)],
    ),
    ("Paid Video", [("youtube", "cpv", None), ("vimeo", "paid", None)], [("youtube", "video", None)]),
    (
        "Display",
        [
            ("dv360", "display", None),
            ("x", "banner", None),
            ("x", "Interstitial", None),
            ("x", "cpm", None),
            ("x", "expandable", None),
        ],
        [("x", "displays", None)],
    ),
    ("Paid Other", [("partnerco", "cpc", None), ("x", "paid-anything", None), ("x", "ppc", None)], [("x", "pp", None)]),
    (
        "Organic Shopping",
        [("etsy", "referral", None), ("x", "y", "shop-now"), ("x", "y", "shopping-week")],
        [("x", "y", "workshop")],
    ),
    (
        "Organic Social",
        [("facebook", "referral", None), ("x", "social", None), ("x", "social media", None), ("x", "sm", None)],
        [("x", "socials", None)],
    ),
    (
        "Organic Video",
        [("youtube", "referral", None), ("x", "video", None), ("x", "myvideos", None)],
        [("x", "vid", None)],
    ),
    (
        "Organic Search",
        [("google", "referral", None), ("x", "organic", None), ("yandex.ru", "x", None)],
        [("x", "organics", None)],
    ),
    ("Referral", [("blog.example", "referral", None), ("x", "app", None), ("x", "link", None)], [("x", "links", None)]),
    (
        "Email",
        [("newsletter", "email", None), ("e-mail", "whatever", None), ("x", "E_Mail", None), ("e mail", "x", None)],
        [("x", "emails", None)],
    ),
    ("Affiliates", [("partner", "affiliate", None)], [("partner", "affiliates", None)]),
    ("Audio", [("spotify", "audio", None)], [("spotify", "audiobook", None)]),
    ("SMS", [("sms", "x", None), ("twilio", "SMS", None)], [("x", "sms-blast", None)]),
    (
        "Mobile Push Notifications",
        [("x", "web-push", None), ("x", "mobile-app", None), ("x", "notification", None), ("firebase", "x", None)],
        [("x", "pusher", None)],
    ),
]


def test_rules_cover_every_channel_in_googles_order() -> None:
    assert [name for name, _ in rules().ordered] == [c for c in CHANNELS if c != "Unassigned"]
    assert [name for name, _, _ in RULES] == [c for c in CHANNELS if c != "Unassigned"]


@pytest.mark.parametrize(("channel", "positives", "negatives"), RULES, ids=[r[0] for r in RULES])
def test_rule(
    channel: str,
    positives: list[tuple[str | None, str | None, str | None]],
    negatives: list[tuple[str | None, str | None, str | None]],
) -> None:
    for source, medium, campaign in positives:
        assert classify(source, medium, campaign) == channel, (source, medium, campaign)
    for source, medium, campaign in negatives:
        assert classify(source, medium, campaign) != channel, (source, medium, campaign)


def test_nothing_matches_is_unassigned() -> None:
    assert classify("newsletter", None, None) == "Unassigned"
    assert classify("x", "weird", "spring") == "Unassigned"


@pytest.mark.parametrize(
    ("referrer", "expected", "source_medium"),
    [
        (None, "Direct", ("(direct)", "(none)")),
        ("", "Direct", ("(direct)", "(none)")),
        ("https://www.google.co.uk/search?q=shoes", "Organic Search", ("google.co.uk", "organic")),
        ("https://duckduckgo.com/", "Organic Search", ("duckduckgo.com", "organic")),
        ("https://l.facebook.com/l.php?u=x", "Organic Social", ("l.facebook.com", "referral")),
        ("https://m.youtube.com/watch", "Organic Video", ("m.youtube.com", "referral")),
        ("https://www.etsy.com/shop/x", "Organic Shopping", ("etsy.com", "referral")),
        ("https://docs.google.com/document/d/1", "Referral", ("docs.google.com", "referral")),
        ("https://someblog.example/post", "Referral", ("someblog.example", "referral")),
    ],
)
def test_untagged_visits_take_their_channel_from_the_referrer(
    referrer: str | None, expected: str, source_medium: tuple[str, str]
) -> None:
    assert classify(None, None, None, referrer) == expected
    assert source_medium_from_referrer(referrer) == source_medium


def test_tags_beat_the_referrer() -> None:
    assert classify("newsletter", "email", None, "https://google.com/") == "Email"


def test_attribute_reads_utm_from_the_landing_url_and_ignores_internal_referrers() -> None:
    a = attribute(
        "https://shop.test/p?utm_source=Newsletter&utm_medium=email&utm_campaign=spring&utm_content=hero", None
    )
    assert (a.source, a.medium, a.campaign, a.content, a.channel) == ("Newsletter", "email", "spring", "hero", "Email")
    assert attribute("https://shop.test/b", "https://shop.test/a").channel == "Direct"
    assert attribute("https://shop.test/b", "https://www.bing.com/").channel == "Organic Search"


def test_context_campaign_wins_over_the_url() -> None:
    a = attribute("https://shop.test/?utm_source=google&utm_medium=cpc", None, {"source": "tiktok", "medium": "paid"})
    assert a.channel == "Paid Social"


def test_google_ads_click_id_is_paid_search() -> None:
    assert attribute("https://shop.test/?gclid=abc123", "https://www.google.com/").channel == "Paid Search"
