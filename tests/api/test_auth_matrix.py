"""The authorization matrix: every route of the app x every kind of caller x product scope.

`MATRIX` has one entry per route (method and path, as the app declares it) with what each
caller gets: allowed (the route's success status), 401, 403 or 404. The routes are read from
the app itself, so a route added without an entry here fails `test_every_route_is_in_the_
matrix`, and an entry for a route that is gone fails it too. Routes that are not the fleet
API (the OpenAPI document, the docs pages, /metrics, the web UI under /ui) are classified
in the same table. A web UI case (`ui=True`) is called as a browser would: the caller
signs in with its credential first (only an API key can), its session cookie and CSRF
token go with the request, and "401" there is the redirect to the sign-in page.

Each route runs against a fresh app on a real SQLite store and the session's Temporal dev
server, with a world of keys, factories, a job leased to a factory and an artifact.

The rules, as `gigafactory.services.access` states them: no or bad credentials are 401; a
factory token where an API key is needed (and the other way round) is 401; a role below the
route's is 403, whatever the target (role first, so a 403 never tells whether the target
exists); a key with the role but without the target's product gets 404, as if it did not
exist; a factory reporting for a job whose lease another factory holds gets 403.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import fastapi.routing
import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from api.app import create_app
from gigafactory.models import Role, Stage
from gigafactory.services.access import ROLE_RANK
from gigafactory.settings import Settings
from tests.api.conftest import Api, new_product

pytestmark = pytest.mark.temporal

OK = 0  # the route's success status (each case says which)

# Every kind of caller. The factory holding the job's lease comes last: a factory rotating
# its own token ends its identity for the rest of the route's run.
KEY_CALLERS: dict[str, tuple[Role, str]] = {
    "submitter": (Role.SUBMITTER, "own"),
    "operator": (Role.OPERATOR, "own"),
    "admin": (Role.ADMIN, "own"),
    "submitter-other": (Role.SUBMITTER, "other"),
    "operator-other": (Role.OPERATOR, "other"),
    "admin-other": (Role.ADMIN, "other"),
    "admin-all": (Role.ADMIN, "all"),
}
UNAUTHENTICATED = ("anonymous", "invalid-key", "revoked-key", "revoked-factory")
FACTORIES = ("factory-other", "factory")
CALLERS = (*UNAUTHENTICATED, *KEY_CALLERS, *FACTORIES)

Rule = Callable[[str], int]


# --- rules ------------------------------------------------------------------------------------
def public(caller: str) -> int:
    return OK


def keyed(role: Role, *, scoped: bool) -> Rule:
    """An API key of at least `role`; `scoped`: the target belongs to the world's product."""

    def rule(caller: str) -> int:
        if caller not in KEY_CALLERS:
            return 401
        own_role, scope = KEY_CALLERS[caller]
        if ROLE_RANK[own_role] < ROLE_RANK[role]:
            return 403
        if scoped and scope == "other":
            return 404
        return OK

    return rule


def factory_report(*, own_lease: bool) -> Rule:
    """A factory token only; `own_lease`: only the factory the target belongs to."""

    def rule(caller: str) -> int:
        if caller == "factory":
            return OK
        if caller == "factory-other":
            return 403 if own_lease else OK
        return 401

    return rule


def key_or_factory(role: Role, *, scoped: bool) -> Rule:
    """An API key as `keyed`, or the factory the target belongs to."""
    as_key = keyed(role, scoped=scoped)

    def rule(caller: str) -> int:
        if caller in FACTORIES:
            return factory_report(own_lease=True)(caller)
        return as_key(caller)

    return rule


# --- the world --------------------------------------------------------------------------------
@dataclass
class World:
    """What the calls act on: the product P (own) and Q (other), callers' credentials, a
    job of P whose lease epoch 1 is held by `factory`, an artifact of it."""

    api: Api
    product: str
    credentials: dict[str, str | None] = field(default_factory=dict)
    factory_id: str = ""
    job_id: str = ""
    artifact_id: str = ""

    @property
    def admin(self) -> dict[str, str]:
        return self.api.admin

    async def fresh_job(self, stage: Stage | None = None) -> str:
        job_id = str((await self.api.submit())["id"])
        if stage is not None:
            await self.api.set_job(job_id, stage=stage)
        return job_id

    async def fresh_factory(self) -> str:
        return (await self.api.enroll())[0]

    async def fresh_artifact(self) -> str:
        r = await self.api.http.post(
            f"/fleet/jobs/{self.job_id}/artifacts",
            params={"name": f"a-{uuid.uuid4().hex[:6]}.txt"},
            content=b"artifact",
            headers=self.admin,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


async def build_world(api: Api) -> World:
    world = World(api, api.product)
    other = new_product()
    creds: dict[str, str | None] = {
        "anonymous": None,
        "invalid-key": "gfk_0123456789ab_" + "x" * 43,
    }
    for name, (role, scope) in KEY_CALLERS.items():
        products = {"own": [api.product], "other": [other], "all": ["*"]}[scope]
        creds[name] = await api.key(role.value, products)
    revoked = await api.key("admin", ["*"])
    r = await api.http.delete(f"/fleet/keys/{revoked.split('_')[1]}", headers=api.admin)
    assert r.status_code == 204
    creds["revoked-key"] = revoked
    gone_id, creds["revoked-factory"] = await api.enroll()
    r = await api.http.post(f"/fleet/factories/{gone_id}/token/revoke", headers=api.admin)
    assert r.status_code == 200
    world.factory_id, creds["factory"] = await api.enroll()
    _, creds["factory-other"] = await api.enroll()
    world.credentials = creds
    world.job_id = await world.fresh_job()
    await api.set_job(world.job_id, stage=Stage.RUNNING, lease_epoch=1, factory_id=world.factory_id)
    world.artifact_id = await world.fresh_artifact()
    return world


# --- calls ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    content: bytes | None = None


Make = Callable[[World, str], Awaitable[Call]]


def call(method: str, path: str, **kwargs: Any) -> Make:
    """A fixed call; `{job}`, `{factory}`, `{artifact}`, `{product}` are the world's."""

    async def make(world: World, caller: str) -> Call:
        names = {
            "job": world.job_id,
            "factory": world.factory_id,
            "artifact": world.artifact_id,
            "product": world.product,
        }
        json = _filled(kwargs.get("json"), names)
        return Call(method, path.format(**names), json, kwargs.get("params"), kwargs.get("content"))

    return make


def _filled(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {k: _filled(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(v, names) for v in value]
    return value


def get(path: str, **kwargs: Any) -> Make:
    return call("GET", path, **kwargs)


def post(path: str, **kwargs: Any) -> Make:
    return call("POST", path, **kwargs)


def lease(world: World) -> dict[str, Any]:
    return {"productId": world.product, "epoch": 1}


async def report(world: World, caller: str, what: str) -> Call:
    body: dict[str, Any] = lease(world)
    if what == "log":
        body |= {"seq": 0, "text": "hello\n"}
    return Call("POST", f"/fleet/jobs/{world.job_id}/{what}", json=body)


async def upload(world: World, caller: str) -> Call:
    params: dict[str, Any] = {"name": f"u-{uuid.uuid4().hex[:6]}.txt"}
    if caller in FACTORIES:
        params |= lease(world)
    return Call("POST", f"/fleet/jobs/{world.job_id}/artifacts", params=params, content=b"x")


async def content(world: World, caller: str) -> Call:
    params = lease(world) if caller in FACTORIES else None
    path = f"/fleet/jobs/{world.job_id}/artifacts/{world.artifact_id}/content"
    return Call("GET", path, params=params)


async def change_job(world: World, caller: str, action: str) -> Call:
    stage = Stage.SUCCEEDED if action == "ship" else None
    job_id = await world.fresh_job(stage)
    return Call("PATCH", f"/fleet/jobs/{job_id}", json={"action": action})


async def delete_artifact(world: World, caller: str) -> Call:
    artifact_id = await world.fresh_artifact()
    return Call("DELETE", f"/fleet/jobs/{world.job_id}/artifacts/{artifact_id}")


async def enroll(world: World, caller: str) -> Call:
    r = await world.api.http.post("/fleet/factories/enrollment-tokens", headers=world.admin)
    body = {"enrollmentToken": r.json()["token"], "factoryId": f"f-{uuid.uuid4().hex[:8]}"}
    return Call("POST", "/fleet/factories/enroll", json=body)


async def rotate(world: World, caller: str) -> Call:
    # A key rotates another factory's token; a factory tries the one holding the lease (its
    # own for "factory"), so the world's factory keeps its token until its own turn.
    target = world.factory_id if caller in FACTORIES else await world.fresh_factory()
    return Call("POST", f"/fleet/factories/{target}/token/rotate")


async def revoke_factory(world: World, caller: str) -> Call:
    return Call("POST", f"/fleet/factories/{await world.fresh_factory()}/token/revoke")


async def revoke_key(world: World, caller: str) -> Call:
    key = await world.api.key("submitter", [world.product])
    return Call("DELETE", f"/fleet/keys/{key.split('_')[1]}")


def factory_change(what: str) -> Make:
    async def make(world: World, caller: str) -> Call:
        return Call("POST", f"/fleet/factories/{await world.fresh_factory()}/{what}")

    return make


SUBMIT = {"productId": "{product}", "engine": "shell", "prompt": "true"}
# The web UI's forms: the submit dialog's fields, and a spec pasted for a dry run.
UI_SUBMIT = {"productId": "{product}", "engine": "shell", "prompt": "true"}
UI_BUDGET = {"ceiling": "5"}
UI_WEIGHTS = {"load": "2"}
UI_PLAN = {"productId": "{product}", "spec": "| engine |\n|---|\n| shell |\n\ntrue\n"}


async def ui_sign_in(world: World, caller: str) -> Call:
    """The caller's own credential in the sign-in form (its session is not used)."""
    return Call("POST", "/ui/sign-in", json={"apiKey": world.credentials[caller] or ""})


def ui_factory_change(action: str) -> Make:
    async def make(world: World, caller: str) -> Call:
        return Call("POST", f"/ui/factories/{await world.fresh_factory()}/{action}")

    return make


async def ui_change_job(world: World, caller: str, action: str) -> Call:
    stage = Stage.SUCCEEDED if action == "ship" else None
    return Call("POST", f"/ui/jobs/{await world.fresh_job(stage)}/{action}")


async def ui_delete_artifact(world: World, caller: str) -> Call:
    artifact_id = await world.fresh_artifact()
    return Call("POST", f"/ui/jobs/{world.job_id}/artifacts/{artifact_id}/delete")


ANY_KEY = keyed(Role.SUBMITTER, scoped=False)
OWN = keyed(Role.SUBMITTER, scoped=True)
OPERATOR_OWN = keyed(Role.OPERATOR, scoped=True)
OPERATOR_FLEET = keyed(Role.OPERATOR, scoped=False)
ADMIN_FLEET = keyed(Role.ADMIN, scoped=False)


@dataclass(frozen=True)
class Case:
    """One way to call a route: who gets what, the call, and the status when allowed (a 409
    where the world's state refuses the operation after authorization passed)."""

    name: str
    rule: Rule
    make: Make
    ok: int = 200
    ui: bool = False


MATRIX: dict[tuple[str, str], list[Case]] = {
    # --- not the fleet API: documentation and health, public --------------------------------
    ("GET", "/openapi.json"): [Case("schema", public, get("/openapi.json"))],
    ("GET", "/docs"): [Case("swagger", public, get("/docs"))],
    ("GET", "/docs/oauth2-redirect"): [Case("oauth", public, get("/docs/oauth2-redirect"))],
    ("GET", "/redoc"): [Case("redoc", public, get("/redoc"))],
    ("GET", "/healthz"): [Case("health", public, get("/healthz"))],
    # --- jobs --------------------------------------------------------------------------------
    ("POST", "/fleet/jobs"): [
        Case("submit", OWN, post("/fleet/jobs", json=SUBMIT), 201),
    ],
    ("GET", "/fleet/jobs"): [Case("list", ANY_KEY, get("/fleet/jobs"))],
    ("GET", "/fleet/jobs/{job_id}"): [Case("read", OWN, get("/fleet/jobs/{job}"))],
    ("PATCH", "/fleet/jobs/{job_id}"): [
        Case("cancel", OWN, lambda w, c: change_job(w, c, "cancel"), 202),
        Case("ship", OPERATOR_OWN, lambda w, c: change_job(w, c, "ship"), 200),
    ],
    ("GET", "/fleet/jobs/{job_id}/runs"): [Case("runs", OWN, get("/fleet/jobs/{job}/runs"))],
    ("GET", "/fleet/jobs/{job_id}/events"): [Case("events", OWN, get("/fleet/jobs/{job}/events"))],
    ("GET", "/fleet/jobs/{job_id}/log"): [Case("log", OWN, get("/fleet/jobs/{job}/log"))],
    ("POST", "/fleet/jobs/{job_id}/started"): [
        Case("started", factory_report(own_lease=True), lambda w, c: report(w, c, "started"), 204)
    ],
    ("POST", "/fleet/jobs/{job_id}/stopped"): [
        Case("stopped", factory_report(own_lease=True), lambda w, c: report(w, c, "stopped"), 204)
    ],
    ("POST", "/fleet/jobs/{job_id}/log"): [
        Case("log", factory_report(own_lease=True), lambda w, c: report(w, c, "log"), 204)
    ],
    ("GET", "/fleet/jobs/{job_id}/routing"): [
        Case("explain", OWN, get("/fleet/jobs/{job}/routing"))
    ],
    ("GET", "/fleet/jobs/{job_id}/dag"): [Case("dag", OWN, get("/fleet/jobs/{job}/dag"))],
    ("POST", "/fleet/jobs/{job_id}/children"): [
        # The world's job is a leaf: an authorized caller is told it is not an open parent.
        Case(
            "children",
            OWN,
            post("/fleet/jobs/{job}/children", json={"children": [{"id": "c", "prompt": "p"}]}),
            409,
        )
    ],
    # --- artifacts ---------------------------------------------------------------------------
    ("POST", "/fleet/jobs/{job_id}/artifacts"): [
        Case("upload", key_or_factory(Role.SUBMITTER, scoped=True), upload, 201)
    ],
    ("GET", "/fleet/jobs/{job_id}/artifacts"): [
        Case("list", OWN, get("/fleet/jobs/{job}/artifacts"))
    ],
    ("GET", "/fleet/jobs/{job_id}/artifacts/{artifact_id}"): [
        Case("read", OWN, get("/fleet/jobs/{job}/artifacts/{artifact}"))
    ],
    ("GET", "/fleet/jobs/{job_id}/artifacts/{artifact_id}/content"): [
        Case("content", key_or_factory(Role.SUBMITTER, scoped=True), content)
    ],
    ("DELETE", "/fleet/jobs/{job_id}/artifacts/{artifact_id}"): [
        Case("delete", OPERATOR_OWN, delete_artifact, 204)
    ],
    # --- factories ---------------------------------------------------------------------------
    ("POST", "/fleet/factories/enrollment-tokens"): [
        Case("token", OPERATOR_FLEET, post("/fleet/factories/enrollment-tokens"), 201)
    ],
    # The enrollment token in the body is the credential; a bearer header changes nothing.
    ("POST", "/fleet/factories/enroll"): [Case("enroll", public, enroll, 201)],
    ("POST", "/fleet/factories/heartbeat"): [
        Case(
            "heartbeat",
            factory_report(own_lease=False),
            post("/fleet/factories/heartbeat", json={"engines": ["shell"], "slots": 1}),
        )
    ],
    ("POST", "/fleet/factories/{factory_id}/token/rotate"): [
        Case("rotate", key_or_factory(Role.OPERATOR, scoped=False), rotate)
    ],
    ("POST", "/fleet/factories/{factory_id}/token/revoke"): [
        Case("revoke", OPERATOR_FLEET, revoke_factory)
    ],
    ("POST", "/fleet/factories/{factory_id}/cordon"): [
        Case("cordon", OPERATOR_FLEET, factory_change("cordon"))
    ],
    ("POST", "/fleet/factories/{factory_id}/uncordon"): [
        Case("uncordon", OPERATOR_FLEET, factory_change("uncordon"))
    ],
    ("GET", "/fleet/factories"): [Case("list", OPERATOR_FLEET, get("/fleet/factories"))],
    ("GET", "/fleet/factories/{factory_id}"): [
        Case("read", OPERATOR_FLEET, get("/fleet/factories/{factory}"))
    ],
    # --- keys and the audit log --------------------------------------------------------------
    ("POST", "/fleet/keys"): [
        Case(
            "create",
            keyed(Role.ADMIN, scoped=True),
            post("/fleet/keys", json={"name": "n", "role": "submitter", "products": ["{product}"]}),
            201,
        )
    ],
    ("GET", "/fleet/keys"): [Case("list", ADMIN_FLEET, get("/fleet/keys"))],
    ("DELETE", "/fleet/keys/{key_id}"): [
        Case("revoke", keyed(Role.ADMIN, scoped=True), revoke_key, 204)
    ],
    ("GET", "/fleet/audit"): [Case("read", ADMIN_FLEET, get("/fleet/audit"))],
    ("GET", "/metrics"): [Case("scrape", OPERATOR_FLEET, get("/metrics"))],
    # --- routing -----------------------------------------------------------------------------
    ("GET", "/fleet/routing/weights/{product_id}"): [
        Case("read", OWN, get("/fleet/routing/weights/{product}"))
    ],
    ("PUT", "/fleet/routing/weights/{product_id}"): [
        Case(
            "change",
            OPERATOR_OWN,
            call("PUT", "/fleet/routing/weights/{product}", json={"weights": {"load": 2}}),
        )
    ],
    ("POST", "/fleet/routing/plan"): [Case("plan", OWN, post("/fleet/routing/plan", json=SUBMIT))],
    ("GET", "/fleet/routing/shadow/{product_id}"): [
        Case("shadow", OWN, get("/fleet/routing/shadow/{product}"))
    ],
    # --- budgets (FLEET_BUDGETS off: pause and resume are refused after authorization) -------
    ("GET", "/fleet/budgets"): [Case("list", OPERATOR_FLEET, get("/fleet/budgets"))],
    ("GET", "/fleet/budgets/{product_id}"): [
        Case("read", OPERATOR_OWN, get("/fleet/budgets/{product}"))
    ],
    ("PUT", "/fleet/budgets/{product_id}"): [
        Case("set", OPERATOR_OWN, call("PUT", "/fleet/budgets/{product}", json={"ceilingUsd": 5}))
    ],
    ("POST", "/fleet/budgets/{product_id}/pause"): [
        Case("pause", OPERATOR_OWN, post("/fleet/budgets/{product}/pause"), 409)
    ],
    ("POST", "/fleet/budgets/{product_id}/resume"): [
        Case("resume", OPERATOR_OWN, post("/fleet/budgets/{product}/resume"), 409)
    ],
    # --- the web control plane (a browser's session; actions answer 303 back to a page) ---
    ("GET", "/ui/sign-in"): [Case("form", public, get("/ui/sign-in"), ui=True)],
    ("POST", "/ui/sign-in"): [Case("sign in", ANY_KEY, ui_sign_in, 303, ui=True)],
    ("POST", "/ui/sign-out"): [Case("sign out", ANY_KEY, post("/ui/sign-out"), 303, ui=True)],
    ("MOUNT", "/ui/static"): [Case("static", public, get("/ui/static/app.css"), ui=True)],
    ("GET", "/ui"): [Case("fleet map", ANY_KEY, get("/ui"), ui=True)],
    ("GET", "/ui/fleet/cards"): [Case("cards", ANY_KEY, get("/ui/fleet/cards"), ui=True)],
    ("POST", "/ui/factories/{factory_id}/{action}"): [
        Case("cordon", OPERATOR_FLEET, ui_factory_change("cordon"), 303, ui=True),
        Case("revoke", OPERATOR_FLEET, ui_factory_change("revoke"), 303, ui=True),
    ],
    ("GET", "/ui/jobs"): [Case("table", ANY_KEY, get("/ui/jobs"), ui=True)],
    ("GET", "/ui/jobs/rows"): [Case("rows", ANY_KEY, get("/ui/jobs/rows"), ui=True)],
    ("POST", "/ui/jobs"): [Case("submit", OWN, post("/ui/jobs", json=UI_SUBMIT), 303, ui=True)],
    ("GET", "/ui/jobs/{job_id}"): [Case("job", OWN, get("/ui/jobs/{job}"), ui=True)],
    ("GET", "/ui/jobs/{job_id}/live"): [Case("live", OWN, get("/ui/jobs/{job}/live"), ui=True)],
    ("GET", "/ui/jobs/{job_id}/log"): [Case("log", OWN, get("/ui/jobs/{job}/log"), ui=True)],
    ("POST", "/ui/jobs/{job_id}/cancel"): [
        Case("cancel", OWN, lambda w, c: ui_change_job(w, c, "cancel"), 303, ui=True)
    ],
    ("POST", "/ui/jobs/{job_id}/ship"): [
        Case("ship", OPERATOR_OWN, lambda w, c: ui_change_job(w, c, "ship"), 303, ui=True)
    ],
    ("GET", "/ui/jobs/{job_id}/artifacts/{artifact_id}"): [
        Case("download", OWN, get("/ui/jobs/{job}/artifacts/{artifact}"), ui=True)
    ],
    ("POST", "/ui/jobs/{job_id}/artifacts/{artifact_id}/delete"): [
        Case("delete", OPERATOR_OWN, ui_delete_artifact, 303, ui=True)
    ],
    ("GET", "/ui/budgets"): [Case("panel", OPERATOR_FLEET, get("/ui/budgets"), ui=True)],
    ("GET", "/ui/budgets/rows"): [Case("rows", OPERATOR_FLEET, get("/ui/budgets/rows"), ui=True)],
    ("POST", "/ui/budgets/{product_id}"): [
        Case(
            "set", OPERATOR_OWN, post("/ui/budgets/{product}", json={"ceiling": "5"}), 303, ui=True
        )
    ],
    # FLEET_BUDGETS off: refused after authorization, back on the page with the reason.
    ("POST", "/ui/budgets/{product_id}/pause"): [
        Case("pause", OPERATOR_OWN, post("/ui/budgets/{product}/pause"), 303, ui=True)
    ],
    ("POST", "/ui/budgets/{product_id}/resume"): [
        Case("resume", OPERATOR_OWN, post("/ui/budgets/{product}/resume"), 303, ui=True)
    ],
    ("GET", "/ui/routing"): [Case("page", ANY_KEY, get("/ui/routing"), ui=True)],
    ("POST", "/ui/routing/{product_id}"): [
        Case(
            "weights", OPERATOR_OWN, post("/ui/routing/{product}", json={"load": "2"}), 303, ui=True
        )
    ],
    ("POST", "/ui/routing/plan/dry-run"): [
        Case("dry run", OWN, post("/ui/routing/plan/dry-run", json=UI_PLAN), ui=True)
    ],
}


def app_routes() -> set[tuple[str, str]]:
    """Every (method, path) the app serves; a mounted app counts as ("MOUNT", path)."""
    app = create_app(Settings())
    # FastAPI includes routers lazily: resolve them into the routes they serve.
    resolve = getattr(fastapi.routing, "iter_route_contexts", None)
    routes: list[Any] = list(resolve(app.routes)) if resolve else list(app.routes)
    found: set[tuple[str, str]] = set()
    for route in routes:
        original = getattr(route, "original_route", route)
        if isinstance(original, Mount):
            found.add(("MOUNT", original.path))
        elif isinstance(original, APIRoute | Route):
            found |= {(m, route.path) for m in route.methods or () if m != "HEAD"}
        else:
            found.add(("?", f"{type(original).__name__} {getattr(route, 'path', '')}"))
    return found


def test_every_route_is_in_the_matrix() -> None:
    served = app_routes()
    missing = sorted(served - set(MATRIX))
    stale = sorted(set(MATRIX) - served)
    assert missing == [], f"routes without an entry in MATRIX: {missing}"
    assert stale == [], f"MATRIX entries for routes the app no longer serves: {stale}"


def test_every_case_covers_every_caller_kind() -> None:
    """Each rule answers for each caller with one of the four outcomes."""
    for route, cases in MATRIX.items():
        for case in cases:
            outcomes = {case.rule(c) for c in CALLERS}
            assert outcomes <= {OK, 401, 403, 404}, (route, case.name, outcomes)


ERROR_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found"}


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
async def test_route_answers_each_caller_as_the_matrix_says(
    api: Api, route: tuple[str, str]
) -> None:
    world = await build_world(api)
    wrong: list[str] = []
    for case in MATRIX[route]:
        for caller in CALLERS:
            expected = case.rule(caller)
            request = await case.make(world, caller)
            token = world.credentials[caller]
            if case.ui:
                wrong += await _as_browser(api, case, caller, token, request, expected)
                continue
            r = await api.http.request(
                request.method,
                request.path,
                json=request.json,
                params=request.params,
                content=request.content,
                headers={"Authorization": f"Bearer {token}"} if token else {},
            )
            status = case.ok if expected == OK else expected
            if r.status_code != status:
                wrong.append(
                    f"{case.name} as {caller}: {r.status_code}, expected {status}: {r.text[:200]}"
                )
            elif expected in ERROR_CODES and r.json()["error"]["code"] != ERROR_CODES[expected]:
                wrong.append(f"{case.name} as {caller}: code {r.json()['error']['code']}")
    assert wrong == [], "\n".join(wrong)


_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


async def _as_browser(
    api: Api, case: Case, caller: str, token: str | None, request: Call, expected: int
) -> list[str]:
    """Call a web UI route as the caller's browser: signed in with its credential (which
    works for API keys only), with its cookie and, on a POST, its CSRF token; the request's
    `json` is sent as the form."""
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ui.test") as browser:
        form: dict[str, Any] = dict(request.json or {})
        if case.make is not ui_sign_in and token:
            signed = await browser.post("/ui/sign-in", data={"apiKey": token, "next": "/ui"})
            if signed.status_code == 303:
                page = await browser.get("/ui/jobs")
                match = _CSRF.search(page.text)
                assert match, f"{caller}: the signed-in page carries no CSRF token"
                form["csrf"] = match.group(1)
        if request.method == "POST":
            r = await browser.post(request.path, data=form)
        else:
            r = await browser.request(request.method, request.path, params=request.params)
    where = f"{case.name} as {caller}"
    if expected == 401 and case.make is not ui_sign_in:
        # No session: the browser is sent to the sign-in page.
        location = r.headers.get("location", "")
        if r.status_code != 303 or not location.startswith("/ui/sign-in"):
            return [f"{where}: {r.status_code} to {location!r}, expected the sign-in page"]
        return []
    status = case.ok if expected == OK else expected
    if r.status_code != status:
        return [f"{where}: {r.status_code}, expected {status}: {r.text[:200]}"]
    if status == 303 and r.headers.get("location", "").startswith("/ui/sign-in?"):
        return [f"{where}: sent to sign in, expected the action to be taken"]
    return []


async def test_a_revoked_factory_token_and_an_invalid_key_are_refused_with_a_reason(
    api: Api,
) -> None:
    world = await build_world(api)
    for caller, words in (("revoked-factory", "revoked"), ("invalid-key", "invalid API key")):
        token = world.credentials[caller]
        path = "/fleet/factories/heartbeat" if caller == "revoked-factory" else "/fleet/jobs"
        method = "POST" if caller == "revoked-factory" else "GET"
        body = {"engines": ["shell"]} if method == "POST" else None
        r = await api.http.request(
            method, path, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 401 and words in r.json()["error"]["message"], r.text
