"""Tenant isolation, proven over EVERY route the app serves, including routes added after this file was written.

The routes are read from ``create_app()`` at collection time. Only the allow-list in
``storefunnel.auth.public`` may answer without credentials. Every ``{x_id}`` path parameter is filled with
the id of another workspace's row, made by the factory registered for that parameter name below: a new
route with a parameter nobody registered fails here, asking for its factory, instead of going untested.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from storefunnel.auth.keys import create_key, revoke_key
from storefunnel.auth.public import PUBLIC_ROUTES, is_public
from storefunnel.main import create_app
from storefunnel.models import ApiKey, Contact, KeyKind, Order, Product, StageChange, Touch, User, Workspace
from storefunnel.workspaces.service import create_user, create_workspace
from tests.fixtures.factories import create_contact, create_order, create_product, create_touch

_PARAM = re.compile(r"{(\w+)(?::\w+)?}")
BODY_METHODS = {"POST", "PUT", "PATCH"}
# What a dashboard route may answer to a visitor without a session: refusals, or a redirect to the login form.
DENIED_WITHOUT_SESSION = {401, 403, 404, 405}
REDIRECTS = {302, 303, 307}


@dataclass(frozen=True)
class Victim:
    """A row of workspace B: its id, and a unique string in it that must never reach workspace A."""

    model: type[Any]
    id: int
    secret: str


# ---- path parameter name -> how to make workspace B's row of that kind -------------------------------------------


def _contact(s: Session, ws: Workspace, secret: str) -> Victim:
    row = create_contact(s, ws.id, email=f"{secret}@victim.example", first_name=secret, traits={"note": secret})
    return Victim(Contact, row.id, secret)


def _order(s: Session, ws: Workspace, secret: str) -> Victim:
    row = create_order(s, ws.id, external_id=secret, properties={"note": secret})
    return Victim(Order, row.id, secret)


def _product(s: Session, ws: Workspace, secret: str) -> Victim:
    row = create_product(s, ws.id, sku=secret, name=secret)
    return Victim(Product, row.id, secret)


def _touch(s: Session, ws: Workspace, secret: str) -> Victim:
    row = create_touch(s, ws.id, url=f"https://victim.example/{secret}", campaign=secret)
    return Victim(Touch, row.id, secret)


def _stage_change(s: Session, ws: Workspace, secret: str) -> Victim:
    contact = create_contact(s, ws.id)
    row = StageChange(workspace_id=ws.id, contact_id=contact.id, stage="buying", reason=secret)
    s.add(row)
    s.flush()
    return Victim(StageChange, row.id, secret)


def _segment(s: Session, ws: Workspace, secret: str) -> Victim:
    from storefunnel.models import Segment

    row = Segment(workspace_id=ws.id, name=secret, description=secret, kind="static", rules=None)
    s.add(row)
    s.flush()
    return Victim(Segment, row.id, secret)


def _user(s: Session, ws: Workspace, secret: str) -> Victim:
    row = create_user(s, ws.id, f"{secret}@victim.example", "victim-password-123")
    return Victim(User, row.id, secret)


def _api_key(s: Session, ws: Workspace, secret: str) -> Victim:
    row, _ = create_key(s, ws.id, KeyKind.api, name=secret)
    return Victim(ApiKey, row.id, secret)


def _workspace(s: Session, ws: Workspace, secret: str) -> Victim:
    return Victim(Workspace, ws.id, ws.name)


def _email_template(s: Session, ws: Workspace, secret: str) -> Victim:
    from storefunnel.models import EmailTemplate

    row = EmailTemplate(workspace_id=ws.id, name=secret, subject=secret, html=f"<p>{secret}</p>", text=secret)
    s.add(row)
    s.flush()
    return Victim(EmailTemplate, row.id, secret)


def _campaign(s: Session, ws: Workspace, secret: str) -> Victim:
    from storefunnel.models import Campaign, EmailTemplate

    tpl = EmailTemplate(workspace_id=ws.id, name=f"t-{secret}", subject=secret, text=secret)
    s.add(tpl)
    s.flush()
    row = Campaign(workspace_id=ws.id, name=secret, template_id=tpl.id)
    s.add(row)
    s.flush()
    return Victim(Campaign, row.id, secret)


def _flow(s: Session, ws: Workspace, secret: str) -> Victim:
    from storefunnel.models import Flow

    row = Flow(workspace_id=ws.id, name=secret, description=secret, trigger_kind="order", settings={})
    s.add(row)
    s.flush()
    return Victim(Flow, row.id, secret)


def _send(s: Session, ws: Workspace, secret: str) -> Victim:
    from storefunnel.models import EmailTemplate, Send

    contact = create_contact(s, ws.id, email=f"{secret}@victim.example")
    tpl = EmailTemplate(workspace_id=ws.id, name=f"s-{secret}", subject=secret, text=secret)
    s.add(tpl)
    s.flush()
    row = Send(workspace_id=ws.id, contact_id=contact.id, template_id=tpl.id, to_email=contact.email, detail=secret)
    s.add(row)
    s.flush()
    return Victim(Send, row.id, secret)


ID_FACTORIES: dict[str, Callable[[Session, Workspace, str], Victim]] = {
    "contact_id": _contact,
    "order_id": _order,
    "product_id": _product,
    "touch_id": _touch,
    "stage_change_id": _stage_change,
    "segment_id": _segment,
    "user_id": _user,
    "key_id": _api_key,
    "api_key_id": _api_key,
    "workspace_id": _workspace,
    "template_id": _email_template,
    "campaign_id": _campaign,
    "flow_id": _flow,
    "send_id": _send,
}
# Path parameters that name no row (a kind of import, a file): filled with a fixed valid value.
NON_ID_PARAMS: dict[str, str] = {"kind": "contacts", "path": "app.css", "platform": "shopify"}
# The rows every list endpoint is checked against.
LISTED_KINDS = ("contact_id", "order_id", "product_id", "touch_id", "stage_change_id")


# ---- the routes ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteCase:
    method: str
    path: str
    params: tuple[str, ...]

    @property
    def is_api(self) -> bool:
        return self.path.startswith("/api/")

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _enumerate() -> tuple[list[RouteCase], list[str]]:
    """Every (method, path) of the app, through included routers, and the paths of mounted sub-apps."""
    cases: list[RouteCase] = []
    mounts: list[str] = []
    for route in iter_route_contexts(create_app().routes):
        path = route.path_format or route.path
        assert path, f"a route without a path: {route!r}"
        methods = route.methods
        if methods is None:
            mounts.append(path)
            continue
        params = tuple(_PARAM.findall(route.path or path))
        cases.extend(RouteCase(m, path, params) for m in sorted(methods))
    return cases, mounts


ALL_ROUTES, MOUNTS = _enumerate()
PRIVATE = [r for r in ALL_ROUTES if not is_public(r.path)]
WITH_IDS = [r for r in PRIVATE if any(p not in NON_ID_PARAMS for p in r.params)]
API_LISTS = [r for r in PRIVATE if r.is_api and r.method == "GET" and not r.params]


def _unknown_param(route: RouteCase, name: str) -> None:
    pytest.fail(
        f"{route} has the path parameter {{{name}}} that the isolation test cannot fill: add {name!r} to "
        "ID_FACTORIES in tests/api/test_isolation.py (a function creating workspace B's row of that kind) "
        "or to NON_ID_PARAMS if it names no row."
    )


def _fill(route: RouteCase, values: dict[str, str]) -> str:
    path = route.path
    for name in route.params:
        if name in NON_ID_PARAMS:
            value = NON_ID_PARAMS[name]
        elif name in values:
            value = values[name]
        else:
            _unknown_param(route, name)
        path = re.sub(r"{" + name + r"(?::\w+)?}", value, path)
    return path


def _call(client: TestClient, route: RouteCase, path: str, headers: dict[str, str]) -> Any:
    kwargs: dict[str, Any] = {"headers": headers, "follow_redirects": False}
    if route.method in BODY_METHODS:
        kwargs["json"] = {}
    return client.request(route.method, path, **kwargs)


def _assert_denied_without_session(route: RouteCase, r: Any) -> None:
    if r.status_code in REDIRECTS:
        location = r.headers.get("location", "")
        assert location.startswith("/login"), f"{route} redirects to {location!r}, not to the login form"
    else:
        assert r.status_code in DENIED_WITHOUT_SESSION, f"{route} answered {r.status_code} without a session"


@pytest.fixture
def victims(session: Session) -> Callable[[str], Victim]:
    """Workspace B and, on demand, one row of B per parameter kind."""
    ws_b = create_workspace(session, f"victim-{uuid.uuid4().hex[:8]}")
    made: dict[str, Victim] = {}

    def victim(param: str) -> Victim:
        if param not in made:
            made[param] = ID_FACTORIES[param](session, ws_b, f"bsecret{uuid.uuid4().hex[:12]}")
        return made[param]

    return victim


# ---- the proofs ----------------------------------------------------------------------------------------------------


def test_enumeration_sees_the_known_routes() -> None:
    """Guards the guard: if route discovery broke, every other test here would pass on nothing."""
    seen = {str(r) for r in ALL_ROUTES}
    for expected in (
        "GET /api/v1/contacts/{contact_id}",
        "PATCH /api/v1/contacts/{contact_id}",
        "GET /api/v1/contacts/{contact_id}/timeline",
        "POST /api/v1/orders",
        "GET /api/v1/orders/{order_id}",
        "GET /api/v1/products/{product_id}",
        "GET /healthz",
    ):
        assert expected in seen
    assert all(r.is_api for r in WITH_IDS if r.path.startswith("/api/v1/contacts"))


@pytest.mark.parametrize("mount", MOUNTS)
def test_mounted_apps_are_declared_public(mount: str) -> None:
    """A mounted sub-application's routes cannot be enumerated here, so only public ones may be mounted."""
    assert is_public(mount), f"{mount} is mounted but not in PUBLIC_ROUTES; mount only public files or use a router"


def test_public_allow_list_is_what_it_claims() -> None:
    assert "/v1/*" in PUBLIC_ROUTES
    assert "/webhooks/*" in PUBLIC_ROUTES
    assert is_public("/v1/batch")
    assert is_public("/webhooks/shopify/{workspace_id}")
    assert not is_public("/api/v1/contacts")
    assert not is_public("/v10/anything")
    assert not is_public("/webhooksX")


@pytest.mark.parametrize("route", PRIVATE, ids=str)
def test_private_route_refuses_missing_wrong_and_revoked_keys(
    route: RouteCase, client: TestClient, session: Session, workspace: Workspace, victims: Callable[[str], Victim]
) -> None:
    revoked_key, revoked = create_key(session, workspace.id, KeyKind.api)
    assert revoke_key(session, workspace.id, revoked_key.id)
    _, write_key = create_key(session, workspace.id, KeyKind.write)
    path = _fill(route, {p: str(victims(p).id) for p in route.params if p in ID_FACTORIES})
    attempts = {
        "no key": {},
        "wrong key": {"Authorization": "Bearer sfk_" + "x" * 43},
        "revoked key": {"Authorization": f"Bearer {revoked}"},
        "write key": {"Authorization": f"Bearer {write_key}"},
        "not bearer": {"Authorization": f"Basic {revoked}"},
    }
    for what, headers in attempts.items():
        r = _call(client, route, path, headers)
        if route.is_api:
            assert r.status_code == 401, f"{route} with {what}: {r.status_code} {r.text[:200]}"
            if route.method != "HEAD":
                assert r.headers["content-type"].startswith("application/problem+json")
                assert r.json()["status"] == 401
        else:
            _assert_denied_without_session(route, r)


@pytest.mark.parametrize("route", WITH_IDS, ids=str)
def test_another_workspaces_ids_are_404_and_leak_nothing(
    route: RouteCase,
    client: TestClient,
    session: Session,
    auth: dict[str, str],
    victims: Callable[[str], Victim],
) -> None:
    for name in route.params:
        if name not in ID_FACTORIES and name not in NON_ID_PARAMS:
            _unknown_param(route, name)
    targets = {p: victims(p) for p in route.params if p in ID_FACTORIES}
    r = _call(client, route, _fill(route, {p: str(v.id) for p, v in targets.items()}), auth)
    if route.is_api:
        assert r.status_code == 404, (
            f"{route} with another workspace's ids answered {r.status_code}, not 404: {r.text[:300]}"
            + (
                " (if the body failed validation, send a valid example body for this route)"
                if r.status_code == 422
                else ""
            )
        )
    else:
        _assert_denied_without_session(route, r)
    for victim in targets.values():
        assert victim.secret not in r.text, f"{route} leaked workspace B's data"
        session.expire_all()
        still = session.scalar(sa.select(sa.func.count()).select_from(victim.model).where(victim.model.id == victim.id))
        assert still == 1, f"{route} removed workspace B's {victim.model.__name__} {victim.id}"


@pytest.mark.parametrize("route", API_LISTS, ids=str)
def test_lists_never_show_another_workspaces_rows(
    route: RouteCase, client: TestClient, auth: dict[str, str], victims: Callable[[str], Victim]
) -> None:
    secrets = [victims(kind).secret for kind in LISTED_KINDS]
    r = client.get(route.path, headers=auth, params={"limit": 500})
    assert r.status_code < 500, f"{route}: {r.status_code}"
    for secret in secrets:
        assert secret not in r.text, f"{route} listed workspace B's data"


# Routes about something derived from a row, which a fresh row does not have yet (and so is 404 for it too).
DERIVED_ROUTES = {
    "/api/v1/clv/customers/{contact_id}": "a lifetime-value prediction exists only after a fit",
    "/api/v1/related/products/{product_id}": "related-product rules exist only after a build",
    "/api/v1/scoring/contacts/{contact_id}": "a lead score exists only after the model is trained",
}


def test_own_rows_are_reachable_so_404_means_isolation(
    client: TestClient, session: Session, workspace: Workspace, auth: dict[str, str]
) -> None:
    """The same routes do answer 200 for the key's own workspace: the 404s above are not a broken route."""
    mine = {p: ID_FACTORIES[p](session, workspace, f"mine{uuid.uuid4().hex[:8]}") for p in LISTED_KINDS}
    for route in WITH_IDS:
        if route.method != "GET" or not route.is_api or not set(route.params) <= set(mine):
            continue
        if route.path in DERIVED_ROUTES:
            continue
        r = client.get(_fill(route, {p: str(mine[p].id) for p in route.params}), headers=auth)
        assert r.status_code == 200, f"{route} for the key's own row: {r.status_code} {r.text[:200]}"
