"""kubelab's hub admin pages and external trigger API: a hub-managed JupyterHub service.

Mounted at ``/services/kubelab-admin/``; pages extend JupyterHub's own
``page.html``; each page has a JSON API under ``api/``. Handlers are thin:
they authenticate (HubOAuth cookie or ``Authorization: token``), authorize,
and call the service layer (``admin_service.AdminService``).

Run by the hub (see ``kubelab.hub.config.admin_service``)::

    python -m kubelab.hub.admin
"""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from jinja2 import ChoiceLoader, Environment, FileSystemLoader
from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated, check_scopes
from jupyterhub.utils import url_path_join
from tornado import web
from traitlets import Int, List, Unicode
from traitlets.config import Application, Config

from .admin_service import AdminError, AdminService
from .audit import AuditLog
from .hubapi import AsyncHubAPI

CONFIG_ENV = "KUBELAB_ADMIN_CONFIG"
TRIGGER_SCOPE = "custom:kubelab-schedules:run"
TEMPLATES = Path(__file__).parent / "templates"
PAGES = [("users", "Users & namespaces"), ("groups", "Resource groups"), ("approvals", "Approvals"),
         ("workloads", "Workloads"), ("events", "Events"), ("audit", "Audit")]


def jupyterhub_templates() -> str:
    from jupyterhub._data import DATA_FILES_PATH

    return os.path.join(DATA_FILES_PATH, "templates")


# -- handlers ---------------------------------------------------------------------------------------------
class BaseHandler(HubOAuthenticated, web.RequestHandler):
    hub_user: dict | None = None

    @property
    def svc(self) -> AdminService:
        return self.settings["admin_service"]

    @property
    def admin_app(self) -> "KubelabAdmin":
        return self.settings["admin_app"]

    async def prepare(self) -> None:
        self.hub_user = await self.hub_auth.get_user(self, sync=False)

    def get_current_user(self) -> dict | None:
        return self.hub_user

    @property
    def scopes(self) -> set[str]:
        return set((self.hub_user or {}).get("scopes") or [])

    def is_admin(self) -> bool:
        return bool(self.hub_user) and bool(self.scopes & set(self.admin_app.admin_scopes))

    @property
    def actor(self) -> str:
        m = self.hub_user or {}
        return f"service:{m.get('name')}" if m.get("kind") == "service" else str(m.get("name"))


class APIHandler(BaseHandler):
    """JSON in and out. Token requests need no XSRF token; a cookie request that
    changes something must send the page's (X-XSRFToken), else HubOAuth does not
    accept its cookie and it is unauthenticated (401)."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        elif status_code >= 500:
            message = "internal error; see the kubelab-admin service's log"
        else:
            message = self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"code": status_code, "message": message}))

    def fail(self, code: int, message: str) -> None:
        raise web.HTTPError(code, "%s", message)

    def authenticated(self) -> dict:
        if not self.hub_user:
            self.fail(401, "authentication required: send 'Authorization: token <JupyterHub API token>'")
        return self.hub_user

    def require_admin(self) -> None:
        self.authenticated()
        if not self.is_admin():
            self.fail(403, f"{self.actor} is not a hub admin (needs one of the scopes "
                           f"{', '.join(self.admin_app.admin_scopes)})")

    def body(self) -> dict:
        raw = self.request.body or b""
        if len(raw) > self.admin_app.max_body_bytes:
            self.fail(413, f"request body larger than {self.admin_app.max_body_bytes} bytes")
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            self.fail(400, "the request body is not valid JSON")
        if not isinstance(value, dict):
            self.fail(400, "the request body must be a JSON object")
        return value

    async def run(self, coro, status: int = 200) -> None:
        try:
            result = await coro
        except AdminError as e:
            self.fail(e.code, e.message)
        if isinstance(result, tuple):
            status, result = result
        self.set_status(status)
        self.finish(json.dumps(result))


class UsersAPI(APIHandler):
    async def get(self) -> None:
        self.require_admin()
        await self.run(self.svc.overview())


class StorageAPI(APIHandler):
    async def get(self, user: str) -> None:
        self.require_admin()
        await self.run(self.svc.storage(user))


class ReconcileAPI(APIHandler):
    async def post(self, user: str) -> None:
        self.require_admin()
        await self.run(self.svc.reconcile(self.actor, user))


class NamespaceAPI(APIHandler):
    async def delete(self, user: str) -> None:
        self.require_admin()
        await self.run(self.svc.delete_namespace(self.actor, user, self.body().get("confirm")), 202)


class GroupsAPI(APIHandler):
    async def get(self) -> None:
        self.require_admin()
        await self.run(self.svc.resource_groups())


class CapacityAPI(APIHandler):
    """Aggregated free capacity per resource group, for any hub user or server token."""

    async def get(self) -> None:
        self.authenticated()
        await self.run(self.svc.capacity())


class ApprovalsAPI(APIHandler):
    async def get(self) -> None:
        self.require_admin()
        await self.run(self.svc.approvals())


class DecisionAPI(APIHandler):
    async def post(self, user: str, group: str) -> None:
        self.require_admin()
        body = self.body()
        extra = set(body) - {"decision", "reason"}
        if extra:
            self.fail(400, f"unknown field(s): {', '.join(sorted(extra))}")
        await self.run(self.svc.decide(self.actor, user, group, body.get("decision"), body.get("reason")))


class WorkloadsAPI(APIHandler):
    async def get(self) -> None:
        self.require_admin()
        await self.run(self.svc.workloads(self.get_argument("user", ""), self.get_argument("kind", ""),
                                          self.get_argument("status", "")))


class StopJobAPI(APIHandler):
    async def post(self, namespace: str, name: str) -> None:
        self.require_admin()
        await self.run(self.svc.stop_job(self.actor, namespace, name))


class EventsAPI(APIHandler):
    async def get(self) -> None:
        self.require_admin()
        await self.run(self.svc.events())


class AuditAPI(APIHandler):
    async def get(self) -> None:
        self.require_admin()
        try:
            limit = int(self.get_argument("limit", "200"))
        except ValueError:
            limit = -1
        if not 1 <= limit <= 10000:
            self.fail(400, "limit must be a whole number from 1 to 10000")
        action = self.get_argument("action", None)
        self.finish(json.dumps(self.svc.audit_entries(limit, action)))


class TriggerBase(APIHandler):
    def require_trigger_scope(self, user: str, allow_admin: bool = False) -> None:
        self.authenticated()
        if allow_admin and self.is_admin():
            return
        if not check_scopes({f"{TRIGGER_SCOPE}!user={user}"}, self.scopes):
            self.fail(403, f"this token may not run {user}'s schedules "
                           f"(it needs the scope {TRIGGER_SCOPE}!user={user})")


class TriggerAPI(TriggerBase):
    async def post(self, user: str, schedule: str) -> None:
        self.require_trigger_scope(user)
        body = self.body()
        extra = set(body) - {"parameters"}
        if extra:
            self.fail(400, f"unknown field(s): {', '.join(sorted(extra))}; send {{\"parameters\": {{...}}}}")
        key = self.request.headers.get("Idempotency-Key")
        try:
            status, run = await self.svc.trigger(self.actor, user, schedule, key, body.get("parameters"))
        except AdminError as e:
            self.fail(e.code, e.message)
        status_url = url_path_join(self.settings["service_prefix"], "api/users", quote(user, safe=""), "schedules",
                                   schedule, "runs", run["run"])
        self.set_header("Location", status_url)
        self.set_status(status)
        self.finish(json.dumps({**run, "status_url": status_url}))


class RunAPI(TriggerBase):
    async def get(self, user: str, schedule: str, run: str) -> None:
        self.require_trigger_scope(user, allow_admin=True)
        await self.run(self.svc.run_status(user, schedule, run))


class NotFoundAPI(APIHandler):
    def prepare(self) -> None:  # noqa: D102 - no auth needed to say "no such endpoint"
        self.fail(404, f"no such endpoint: {self.request.method} {self.request.path}")


# -- pages -------------------------------------------------------------------------------------------------
class PageHandler(BaseHandler):
    page = ""

    def render_page(self, template: str, status: int = 200, **ctx: Any) -> None:
        hub_prefix = self.settings["hub_prefix"]
        name = (self.hub_user or {}).get("name", "")
        env: Environment = self.settings["jinja"]
        html = env.get_template(template).render(
            base_url=hub_prefix, prefix=self.settings["base_url"], logo_url=hub_prefix,
            static_url=lambda path, include_version=True: url_path_join(hub_prefix, "static", path),
            user={"name": name, "json_escaped_name": json.dumps(name)[1:-1]} if name else None,
            login_url=url_path_join(hub_prefix, "login"), logout_url=url_path_join(hub_prefix, "logout"),
            parsed_scopes=self.scopes, services=[], no_spawner_check=True, admin_access=self.is_admin(),
            announcement=None, version_hash="", xsrf_token=self.xsrf_token.decode("ascii"),
            service_prefix=self.settings["service_prefix"], pages=PAGES, active=self.page, **ctx)
        self.set_status(status)
        self.finish(html)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        if isinstance(exc, web.HTTPError) and exc.args:
            message = message % exc.args
        try:
            self.render_page("kubelab-admin/error.html", status_code, code=status_code, message=message)
        except Exception:  # noqa: BLE001 - never fail while reporting a failure
            self.finish(f"{status_code}: {message}")

    async def load(self) -> dict:
        raise NotImplementedError

    @web.authenticated
    async def get(self) -> None:
        if not self.is_admin():
            raise web.HTTPError(403, "%s", f"{self.actor} is not a hub admin: these pages are for administrators")
        try:
            data = await self.load()
        except AdminError as e:
            raise web.HTTPError(e.code, "%s", e.message) from None
        self.render_page(f"kubelab-admin/{self.page}.html", data=data, **self.extra())

    def extra(self) -> dict:
        return {}


class UsersPage(PageHandler):
    page = "users"

    async def load(self) -> dict:
        return await self.svc.overview()


class GroupsPage(PageHandler):
    page = "groups"

    async def load(self) -> dict:
        return await self.svc.resource_groups()


class ApprovalsPage(PageHandler):
    page = "approvals"

    async def load(self) -> dict:
        return await self.svc.approvals()


class WorkloadsPage(PageHandler):
    page = "workloads"

    async def load(self) -> dict:
        return await self.svc.workloads(self.get_argument("user", ""), self.get_argument("kind", ""),
                                        self.get_argument("status", ""))

    def extra(self) -> dict:
        from .admin_views import WORKLOAD_KINDS

        return {"kinds": WORKLOAD_KINDS, "filters": {k: self.get_argument(k, "") for k in ("user", "kind", "status")}}


class EventsPage(PageHandler):
    page = "events"

    async def load(self) -> dict:
        return await self.svc.events()


class AuditPage(PageHandler):
    page = "audit"

    async def load(self) -> dict:
        return self.svc.audit_entries(500)


class NotFoundPage(PageHandler):
    async def get(self) -> None:  # noqa: D102
        raise web.HTTPError(404, "%s", "no such page")


# -- the application ------------------------------------------------------------------------------------------
class KubelabAdmin(Application):
    """The hub service serving kubelab's admin pages and trigger API."""

    name = "kubelab-admin"
    description = __doc__.split("\n\n")[0]

    audit_log_path = Unicode(
        "kubelab-admin-audit.jsonl",
        config=True,
        help="""
        The audit log (JSON lines) of admin actions, approval decisions and
        external triggers. Relative paths are in the hub's working directory
        (on zero-to-jupyterhub ``/srv/jupyterhub``, the hub's persistent volume),
        so the log survives hub restarts.

        Example::

            c.KubelabAdmin.audit_log_path = "/srv/jupyterhub/kubelab-audit.jsonl"
        """,
    )
    admin_scopes = List(
        Unicode(), ["admin-ui"],
        config=True,
        help="""
        A token (or the page's login) with any of these unfiltered JupyterHub
        scopes may use the admin pages and API. The default, ``admin-ui``, is
        what JupyterHub's own admin page needs (hub admins have it).

        Example::

            c.KubelabAdmin.admin_scopes = ["admin-ui", "custom:kubelab-admin"]
        """,
    )
    events_limit = Int(
        200,
        config=True,
        help="""
        The most recent warning events the Events page and API return.

        Example::

            c.KubelabAdmin.events_limit = 500
        """,
    )
    max_body_bytes = Int(
        64 * 1024,
        config=True,
        help="""
        The largest JSON request body accepted (e.g. a trigger's parameter
        overrides); larger ones get 413.

        Example::

            c.KubelabAdmin.max_body_bytes = 16 * 1024
        """,
    )
    max_idempotency_key_length = Int(
        200,
        config=True,
        help="""
        The longest ``Idempotency-Key`` header a trigger may send.

        Example::

            c.KubelabAdmin.max_idempotency_key_length = 100
        """,
    )
    storage_max_objects = Int(
        1_000_000,
        config=True,
        help="""
        Storage use of a user is measured by listing ``users/<user>/`` in S3 on
        request; the listing stops (and says so) after this many objects.

        Example::

            c.KubelabAdmin.storage_max_objects = 100_000
        """,
    )
    ip = Unicode(
        "",
        config=True,
        help="""
        Address to listen on. Empty: the host of the service's URL
        (``$JUPYTERHUB_SERVICE_URL``) when it is an IP address, else all interfaces.

        Example::

            c.KubelabAdmin.ip = "0.0.0.0"
        """,
    )

    def initialize(self, argv: list[str] | None = None) -> None:
        raw = os.environ.get(CONFIG_ENV)
        if raw:
            self.update_config(Config(json.loads(raw)))
        self.parse_command_line(argv)

    def listen_address(self) -> tuple[str, int]:
        url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
        host = url.hostname or "127.0.0.1"
        ip = self.ip or (host if host.replace(".", "").isdigit() or ":" in host else "0.0.0.0")
        return ip, url.port or 80

    def make_app(self, svc: AdminService) -> web.Application:
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/kubelab-admin/")
        base_url = os.environ.get("JUPYTERHUB_BASE_URL", "/")
        callback = urlparse(os.environ.get("JUPYTERHUB_OAUTH_CALLBACK_URL", url_path_join(prefix, "oauth_callback")))
        api = url_path_join(prefix, "api")
        u, s, r = r"(?P<user>[^/]+)", r"(?P<schedule>[^/]+)", r"(?P<run>[^/]+)"
        routes = [
            (prefix.rstrip("/") + "/?", web.RedirectHandler, {"url": url_path_join(prefix, "users")}),
            (callback.path, HubOAuthCallbackHandler),
            (api + "/users", UsersAPI),
            (api + f"/users/{u}/storage", StorageAPI),
            (api + f"/users/{u}/reconcile", ReconcileAPI),
            (api + f"/users/{u}/namespace", NamespaceAPI),
            (api + f"/users/{u}/schedules/{s}/runs", TriggerAPI),
            (api + f"/users/{u}/schedules/{s}/runs/{r}", RunAPI),
            (api + "/resource-groups", GroupsAPI),
            (api + "/capacity", CapacityAPI),
            (api + "/approvals", ApprovalsAPI),
            (api + r"/approvals/(?P<user>[^/]+)/(?P<group>[^/]+)", DecisionAPI),
            (api + "/workloads", WorkloadsAPI),
            (api + r"/workloads/jobs/(?P<namespace>[^/]+)/(?P<name>[^/]+)/stop", StopJobAPI),
            (api + "/events", EventsAPI),
            (api + "/audit", AuditAPI),
            (api + "(/.*)?", NotFoundAPI),
        ] + [(url_path_join(prefix, page), cls) for page, cls in (
            ("users", UsersPage), ("groups", GroupsPage), ("approvals", ApprovalsPage),
            ("workloads", WorkloadsPage), ("events", EventsPage), ("audit", AuditPage))] + [
            (prefix + ".*", NotFoundPage)]
        jinja = Environment(loader=ChoiceLoader([FileSystemLoader(str(TEMPLATES)),
                                                 FileSystemLoader(jupyterhub_templates())]), autoescape=True)
        jinja.filters["gib"] = lambda b: f"{(b or 0) / 2**30:.1f} GiB"
        return web.Application(
            routes, admin_service=svc, admin_app=self, jinja=jinja, service_prefix=prefix, base_url=base_url,
            hub_prefix=url_path_join(base_url, "hub/"), cookie_secret=os.urandom(32),
            log_function=self._log_request)

    def _log_request(self, handler: web.RequestHandler) -> None:
        status = handler.get_status()
        log = self.log.warning if status >= 500 else self.log.info if status >= 400 else self.log.debug
        log("%d %s %s %.1fms", status, handler.request.method, handler.request.uri,
            1000 * handler.request.request_time())

    async def serve(self) -> None:
        hub = AsyncHubAPI(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
        svc = AdminService(self.config, hub, AuditLog(self.audit_log_path), self.events_limit,
                           self.max_idempotency_key_length, self.storage_max_objects)
        ip, port = self.listen_address()
        self.make_app(svc).listen(port, ip, xheaders=True)
        self.log.info("kubelab-admin on %s:%d; audit log %s", ip, port, Path(self.audit_log_path).resolve())
        await asyncio.Event().wait()

    def start(self) -> None:
        asyncio.run(self.serve())


def main(argv: list[str] | None = None) -> None:
    app = KubelabAdmin.instance()
    app.initialize(argv)
    app.start()


if __name__ == "__main__":
    main()
