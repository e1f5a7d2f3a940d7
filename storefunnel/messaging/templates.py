"""Email templates: Jinja2 in a sandbox that sees only what a message may say about its recipient.

A template gets plain data, never a database row: ``contact`` (the allowed fields below), ``segments`` (the
names of the buying groups the contact is in now), ``stage``, ``related_products`` (name, sku, price),
``store`` (the workspace name) and ``unsubscribe_url``. The sandbox refuses unsafe attribute access, so an owner's
template cannot reach the application; HTML output is autoescaped, the subject and text part are not.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from storefunnel.errors import Invalid

CONTACT_FIELDS = ("first_name", "last_name", "email", "city", "region", "country")
NAMES = frozenset({"contact", "segments", "stage", "related_products", "store", "unsubscribe_url"})
MAX_SUBJECT = 500
MAX_BODY = 200_000


def _finalize(value: Any) -> Any:
    return "" if value is None else value


def _env(autoescape: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(autoescape=autoescape, finalize=_finalize, undefined=StrictUndefined)
    env.filters["default_name"] = lambda v, fallback="there": v or fallback
    return env


_html_env = _env(True)
_text_env = _env(False)


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


class _Cache:
    """Compiled templates by source text: a campaign compiles its template once, not once per recipient."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._items: OrderedDict[tuple[bool, str], Any] = OrderedDict()
        self._lock = Lock()

    def get(self, source: str, html: bool) -> Any:
        key = (html, source)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        compiled = (_html_env if html else _text_env).from_string(source)
        with self._lock:
            self._items[key] = compiled
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        return compiled


_cache = _Cache()


def check(field: str, source: str, html: bool = False) -> None:
    """Refuse a template that does not parse or names something a template cannot see, naming the field."""
    env = _html_env if html else _text_env
    try:
        parsed = env.parse(source)
    except TemplateSyntaxError as exc:
        raise Invalid(f"{field}: line {exc.lineno}: {exc.message}") from None
    unknown = sorted(meta.find_undeclared_variables(parsed) - NAMES)
    if unknown:
        raise Invalid(f"{field}: unknown name {unknown[0]!r}; a template can use {', '.join(sorted(NAMES))}")
    for node in parsed.find_all((nodes.Getattr,)):
        target = node.node
        if isinstance(target, nodes.Name) and target.name == "contact" and node.attr not in CONTACT_FIELDS:
            raise Invalid(f"{field}: contact.{node.attr} is not available; use one of {', '.join(CONTACT_FIELDS)}")


def uses_related_products(*sources: str) -> bool:
    return any("related_products" in s for s in sources)


def render(subject: str, html: str, text: str, context: dict[str, Any]) -> Rendered:
    """Render the three parts; a runtime error (e.g. dividing by zero) is an Invalid naming the part."""
    out: dict[str, str] = {}
    for field, source, is_html in (("subject", subject, False), ("html", html, True), ("text", text, False)):
        try:
            out[field] = _cache.get(source, is_html).render(context) if source else ""
        except TemplateError as exc:
            raise Invalid(f"{field}: {exc}") from None
        except (ArithmeticError, TypeError, ValueError, LookupError) as exc:
            raise Invalid(f"{field}: {type(exc).__name__}: {exc}") from None
    subject_line = " ".join(out["subject"].split())  # a header cannot hold a line break
    return Rendered(subject_line[:MAX_SUBJECT], out["html"], out["text"])


def contact_context(contact: Any) -> dict[str, Any]:
    """The allowed fields of a contact row (or mapping) as a plain dict."""
    if isinstance(contact, dict):
        return {f: contact.get(f) for f in CONTACT_FIELDS}
    return {f: getattr(contact, f, None) for f in CONTACT_FIELDS}


def uses_segments(*sources: str) -> bool:
    return any("segments" in s for s in sources)
