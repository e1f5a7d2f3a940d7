"""The dashboard's navigation, grouped by the two hats: pages register themselves, so only built pages show.

A page module calls ``register_page(NavEntry(...))`` at import time; the sidebar lists Overview first, then
Marketing, Sales and Together (each only if it has a page), then Settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Hat = Literal["overview", "marketing", "sales", "together", "settings"]
HAT_ORDER: tuple[Hat, ...] = ("overview", "marketing", "sales", "together", "settings")
HAT_LABELS: dict[Hat, str] = {
    "overview": "",
    "marketing": "Marketing",
    "sales": "Sales",
    "together": "Together",
    "settings": "",
}
HAT_HINTS: dict[Hat, str] = {
    "overview": "",
    "marketing": "Leads: volume, channels, audiences, content, campaigns",
    "sales": "Conversion: the five stages, orders, related products, promotions, retention",
    "together": "The advice: marketing or sales?, who buys, where to put the budget",
    "settings": "",
}


@dataclass(frozen=True)
class NavEntry:
    hat: Hat
    label: str
    path: str
    hint: str = ""
    order: int = 100


@dataclass(frozen=True)
class NavSection:
    hat: Hat
    label: str
    hint: str
    entries: tuple[NavEntry, ...]


_entries: dict[str, NavEntry] = {}


def register_page(entry: NavEntry) -> NavEntry:
    """Add (or replace, by path) a page in the navigation."""
    _entries[entry.path] = entry
    return entry


def nav_sections() -> list[NavSection]:
    """The sections that have at least one page, in hat order, pages by (order, label)."""
    sections = []
    for hat in HAT_ORDER:
        entries = sorted((e for e in _entries.values() if e.hat == hat), key=lambda e: (e.order, e.label))
        if entries:
            sections.append(NavSection(hat, HAT_LABELS[hat], HAT_HINTS[hat], tuple(entries)))
    return sections
