"""The one list of routes that answer without an API key or a dashboard session, and why each may.

Everything else is private: the isolation test walks every route of the app and fails on any route
that answers without credentials unless it is listed here. Adding an entry is a security decision.
"""

from __future__ import annotations

# An entry ending in "/*" covers every path below that prefix; any other entry is one exact path
# (FastAPI path templates, e.g. "/webhooks/shopify/{workspace_id}", are matched as written).
PUBLIC_ROUTES: tuple[str, ...] = (
    "/healthz",  # liveness probe for process managers and load balancers; returns no data
    "/api/v1/openapi.json",  # the API description is public documentation
    "/api/v1/docs",
    "/docs/oauth2-redirect",  # part of the Swagger UI page
    "/login",  # the dashboard login form and its POST
    "/static/*",  # the dashboard's CSS, JS and vendored libraries
    # Segment-compatible tracking, long paths and analytics.js's one-letter ones (/v1/t, /v1/p, /v1/i, /v1/s,
    # /v1/g, /v1/a, /v1/b): authenticated by the workspace's write key, not an API key
    "/v1/*",
    "/webhooks/*",  # store platform webhooks: authenticated by the HMAC signature of each body
    "/t/*",  # email open pixel and click redirects: each URL carries its own HMAC signature, else 404
    "/u/*",  # email unsubscribe page and RFC 8058 one-click POST: HMAC-signed token per contact
)


def is_public(path: str, public_routes: tuple[str, ...] = PUBLIC_ROUTES) -> bool:
    """Whether ``path`` (a concrete path or a route template) is reachable without credentials by design."""
    for entry in public_routes:
        if entry.endswith("/*"):
            prefix = entry[:-1]
            if path.startswith(prefix) or path == prefix[:-1]:
                return True
        elif path == entry:
            return True
    return False
