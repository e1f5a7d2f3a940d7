"""Templates, the context every page shares, number formatting, and the headers every page carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.templating import Jinja2Templates, _TemplateResponse

from storefunnel import __version__
from storefunnel.web.csrf import csrf_token
from storefunnel.web.nav import nav_sections

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")

# Minor units per currency where it is not 2 (ISO 4217).
_DECIMALS = {
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}
_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "INR": "₹", "CHF": "CHF ", "CAD": "CA$", "AUD": "A$"}

SECURITY_HEADERS = {
    # Everything the dashboard loads is vendored and served from here: the page works offline and nothing
    # injected can load a script from elsewhere.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def currency_decimals(currency: str) -> int:
    return _DECIMALS.get(currency.upper(), 2)


def minor_to_decimal(minor: int, currency: str, grouping: bool = False) -> str:
    """``123456, "EUR"`` -> ``1234.56``: integer minor units to a decimal string, never through a float."""
    decimals = currency_decimals(currency)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**decimals)
    text = f"{whole:,}" if grouping else str(whole)
    return sign + text + (f".{frac:0{decimals}d}" if decimals else "")


def format_money(minor: int, currency: str) -> str:
    """``123456, "EUR"`` -> ``€1,234.56``."""
    sign = "-" if minor < 0 else ""
    text = minor_to_decimal(abs(minor), currency, grouping=True)
    symbol = _SYMBOLS.get(currency.upper())
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency.upper()}"


def format_percent(rate: float | None, digits: int = 1) -> str:
    return "–" if rate is None else f"{rate * 100:.{digits}f}%"


templates.env.filters["money"] = format_money
templates.env.filters["percent"] = format_percent
templates.env.filters["thousands"] = lambda n: f"{n:,}"
templates.env.filters["longdate"] = lambda d: f"{d.day} {d:%b %Y}"


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> _TemplateResponse:
    """Render a dashboard template with the shared context (user, nav, CSRF token) and security headers."""
    ctx: dict[str, Any] = {
        "csrf_token": csrf_token(request),
        "nav": nav_sections(),
        "path": request.url.path,
        "version": __version__,
        "user": None,
    }
    ctx.update(context or {})
    return templates.TemplateResponse(request, name, ctx, status_code=status_code, headers=SECURITY_HEADERS)
