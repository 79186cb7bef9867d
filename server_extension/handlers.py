"""REST handlers under ``{base_url}kubelab/api/``: thin shells over the service layer.

Every handler requires an authenticated Jupyter user; errors are JSON
``{"code": ..., "message": ...}`` with one line for the user and never a
traceback. Service calls run in a worker thread.
"""
from __future__ import annotations

import asyncio
import functools
import json
import os
from typing import Any, Awaitable, Callable, Iterator

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web
from tornado.iostream import StreamClosedError

import kubelab

from .services import BadRequest, ServiceError, Services

NAME = r"(?P<name>[^/]+)"
RUN = r"(?P<run>[^/]+)"
SPEC_PATH = os.path.join(os.path.dirname(__file__), "openapi.yaml")


def api(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Authenticated; a ServiceError becomes its status with a JSON message."""

    @web.authenticated
    @functools.wraps(method)
    async def wrapper(self: "KubelabHandler", *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except ServiceError as e:
            self.fail(e.code, e.message)

    return wrapper


class KubelabHandler(ExtensionHandlerMixin, APIHandler):
    @property
    def services(self) -> Services:
        return self.settings["kubelab_services"]

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def fail(self, code: int, message: str) -> None:
        self.clear()
        self.set_status(code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"code": code, "message": message}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        elif status_code >= 500:
            message = "internal error in the kubelab extension; the server log has the details"
        else:
            message = self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"code": status_code, "message": message}))

    def json_body(self, required: bool = True) -> Any:
        if not self.request.body:
            if required:
                raise BadRequest("the request body must be a JSON object")
            return {}
        try:
            return json.loads(self.request.body)
        except ValueError:
            raise BadRequest("the request body is not valid JSON") from None

    def reply(self, doc: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(doc))

    def int_arg(self, name: str, default: int | None, lo: int = 0, hi: int = 1_000_000) -> int | None:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            n = int(raw)
        except ValueError:
            raise BadRequest(f"{name} must be a whole number") from None
        if not lo <= n <= hi:
            raise BadRequest(f"{name} must be between {lo} and {hi}")
        return n

    def bool_arg(self, name: str) -> bool:
        raw = (self.get_query_argument(name, "") or "").lower()
        if raw in ("", "0", "false", "no"):
            return False
        if raw in ("1", "true", "yes"):
            return True
        raise BadRequest(f"{name} must be true or false")

    async def stream(self, chunks: Iterator[bytes]) -> None:
        """Send a (possibly endless, when following) log stream as it comes."""
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        sentinel = object()
        try:
            while True:
                chunk = await asyncio.to_thread(next, chunks, sentinel)
                if chunk is sentinel:
                    break
                self.write(chunk)
                await self.flush()
        except StreamClosedError:
            pass
        finally:
            close = getattr(chunks, "close", None)
            if close:
                await asyncio.to_thread(close)
        if not self._finished:
            self.finish(set_content_type="text/plain; charset=utf-8")


# -- meta ------------------------------------------------------------------------------------------
class VersionHandler(KubelabHandler):
    @api
    async def get(self) -> None:
        self.reply({"version": kubelab.__version__})


class SpecHandler(KubelabHandler):
    @api
    async def get(self) -> None:
        with open(SPEC_PATH, "rb") as f:
            self.finish(f.read(), set_content_type="application/yaml")


class WorkspaceHandler(KubelabHandler):
    @api
    async def get(self) -> None:
        self.reply(await self.run(self.services.info))


class ResourcesHandler(KubelabHandler):
    @api
    async def get(self) -> None:
        self.reply(await self.run(self.services.resources.usage))


class CronHandler(KubelabHandler):
    @api
    async def get(self) -> None:
        n = self.int_arg("count", 5, 1, 50)
        self.reply(await self.run(self.services.schedules.preview, self.get_query_argument("schedule", None),
                                  self.get_query_argument("timezone", None), n))


# -- schedules -------------------------------------------------------------------------------------
class SchedulesHandler(KubelabHandler):
    @api
    async def get(self) -> None:
        self.reply({"schedules": await self.run(self.services.schedules.list)})

    @api
    async def post(self) -> None:
        self.reply(await self.run(self.services.schedules.create, self.json_body()), 201)


class ScheduleHandler(KubelabHandler):
    @api
    async def get(self, name: str) -> None:
        self.reply(await self.run(self.services.schedules.get, name))

    @api
    async def patch(self, name: str) -> None:
        self.reply(await self.run(self.services.schedules.update, name, self.json_body()))

    @api
    async def delete(self, name: str) -> None:
        await self.run(self.services.schedules.delete, name)
        self.set_status(204)
        self.finish()


class RunsHandler(KubelabHandler):
    @api
    async def get(self, name: str) -> None:
        self.reply({"runs": await self.run(self.services.schedules.runs, name)})

    @api
    async def post(self, name: str) -> None:
        body = self.json_body(required=False)
        if not isinstance(body, dict) or set(body) - {"parameters"}:
            raise BadRequest("the body may only hold {\"parameters\": {...}}")
        self.reply(await self.run(self.services.schedules.run_now, name, body.get("parameters")), 201)


class RunHandler(KubelabHandler):
    @api
    async def get(self, name: str, run: str) -> None:
        self.reply(await self.run(self.services.schedules.run, name, run))


class RunLogsHandler(KubelabHandler):
    @api
    async def get(self, name: str, run: str) -> None:
        follow, tail = self.bool_arg("follow"), self.int_arg("tail", None)
        await self.stream(await self.run(self.services.schedules.run_logs, name, run, follow, tail))


class RunEventsHandler(KubelabHandler):
    @api
    async def get(self, name: str, run: str) -> None:
        self.reply({"events": await self.run(self.services.schedules.run_events, name, run)})


# -- training jobs ---------------------------------------------------------------------------------
class JobsHandler(KubelabHandler):
    @api
    async def get(self) -> None:
        self.reply({"jobs": await self.run(self.services.jobs.list)})

    @api
    async def post(self) -> None:
        self.reply(await self.run(self.services.jobs.submit, self.json_body()), 201)


class JobHandler(KubelabHandler):
    @api
    async def get(self, name: str) -> None:
        self.reply(await self.run(self.services.jobs.get, name))

    @api
    async def delete(self, name: str) -> None:
        await self.run(self.services.jobs.delete, name)
        self.set_status(204)
        self.finish()


class JobCancelHandler(KubelabHandler):
    @api
    async def post(self, name: str) -> None:
        self.reply(await self.run(self.services.jobs.cancel, name))


class JobLogsHandler(KubelabHandler):
    @api
    async def get(self, name: str) -> None:
        worker, follow, tail = self.int_arg("worker", 0, 0, 10_000), self.bool_arg("follow"), self.int_arg("tail", None)
        await self.stream(await self.run(self.services.jobs.logs, name, worker, follow, tail))


class JobEventsHandler(KubelabHandler):
    @api
    async def get(self, name: str) -> None:
        self.reply({"events": await self.run(self.services.jobs.events, name)})


class JobPendingHandler(KubelabHandler):
    @api
    async def get(self, name: str) -> None:
        self.reply(await self.run(self.services.jobs.why_pending, name))


API = "kubelab/api"
HANDLERS: list[tuple[str, type]] = [
    (rf"/{API}/version", VersionHandler),
    (rf"/{API}/openapi\.yaml", SpecHandler),
    (rf"/{API}/workspace", WorkspaceHandler),
    (rf"/{API}/resources", ResourcesHandler),
    (rf"/{API}/cron", CronHandler),
    (rf"/{API}/schedules", SchedulesHandler),
    (rf"/{API}/schedules/{NAME}", ScheduleHandler),
    (rf"/{API}/schedules/{NAME}/runs", RunsHandler),
    (rf"/{API}/schedules/{NAME}/runs/{RUN}", RunHandler),
    (rf"/{API}/schedules/{NAME}/runs/{RUN}/logs", RunLogsHandler),
    (rf"/{API}/schedules/{NAME}/runs/{RUN}/events", RunEventsHandler),
    (rf"/{API}/jobs", JobsHandler),
    (rf"/{API}/jobs/{NAME}", JobHandler),
    (rf"/{API}/jobs/{NAME}/cancel", JobCancelHandler),
    (rf"/{API}/jobs/{NAME}/logs", JobLogsHandler),
    (rf"/{API}/jobs/{NAME}/events", JobEventsHandler),
    (rf"/{API}/jobs/{NAME}/pending", JobPendingHandler),
]
