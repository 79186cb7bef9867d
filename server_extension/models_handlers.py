"""REST handlers for the model registry and model serving (thin: see services/models.py, serving.py)."""
from __future__ import annotations

from .handlers import API, NAME, KubelabHandler, api
from .services import BadRequest

VERSION = r"(?P<version>[^/]+)"
ALIAS = r"(?P<alias>[^/]+)"


class ModelsHandler(KubelabHandler):
    @api
    async def get(self) -> None:
        self.reply({"models": await self.run(self.services.models.list)})

    @api
    async def post(self) -> None:
        self.reply(await self.run(self.services.models.register, self.json_body()), 201)


class ModelHandler(KubelabHandler):
    @api
    async def get(self, name: str) -> None:
        self.reply(await self.run(self.services.serving.model, name))

    @api
    async def delete(self, name: str) -> None:
        await self.run(self.services.serving.delete_model, name)
        self.set_status(204)
        self.finish()


class ModelVersionHandler(KubelabHandler):
    @api
    async def get(self, name: str, version: str) -> None:
        self.reply(await self.run(self.services.models.version, name, version))


class AliasHandler(KubelabHandler):
    @api
    async def put(self, name: str, alias: str) -> None:
        body = self.json_body()
        if not isinstance(body, dict) or set(body) != {"version"}:
            raise BadRequest("send {\"version\": N}")
        self.reply(await self.run(self.services.models.set_alias, name, alias, body["version"]))

    @api
    async def delete(self, name: str, alias: str) -> None:
        self.reply(await self.run(self.services.models.remove_alias, name, alias))


class InferenceServicesHandler(KubelabHandler):
    @api
    async def get(self) -> None:
        self.reply({"services": await self.run(self.services.serving.list)})

    @api
    async def post(self) -> None:
        self.reply(await self.run(self.services.serving.deploy, self.json_body()), 201)


class InferenceServiceHandler(KubelabHandler):
    @api
    async def get(self, name: str) -> None:
        self.reply(await self.run(self.services.serving.status, name))

    @api
    async def patch(self, name: str) -> None:
        self.reply(await self.run(self.services.serving.update, name, self.json_body()))

    @api
    async def delete(self, name: str) -> None:
        await self.run(self.services.serving.delete, name)
        self.set_status(204)
        self.finish()


class RollbackHandler(KubelabHandler):
    @api
    async def post(self, name: str) -> None:
        self.reply(await self.run(self.services.serving.rollback, name))


class PredictHandler(KubelabHandler):
    @api
    async def post(self, name: str) -> None:
        self.reply(await self.run(self.services.serving.predict, name, self.json_body()))


class ServiceLogsHandler(KubelabHandler):
    @api
    async def get(self, name: str) -> None:
        follow, tail = self.bool_arg("follow"), self.int_arg("tail", None)
        await self.stream(await self.run(self.services.serving.logs, name, follow, tail))


MODEL_HANDLERS: list[tuple[str, type]] = [
    (rf"/{API}/models", ModelsHandler),
    (rf"/{API}/models/{NAME}", ModelHandler),
    (rf"/{API}/models/{NAME}/versions/{VERSION}", ModelVersionHandler),
    (rf"/{API}/models/{NAME}/aliases/{ALIAS}", AliasHandler),
    (rf"/{API}/services", InferenceServicesHandler),
    (rf"/{API}/services/{NAME}", InferenceServiceHandler),
    (rf"/{API}/services/{NAME}/rollback", RollbackHandler),
    (rf"/{API}/services/{NAME}/predict", PredictHandler),
    (rf"/{API}/services/{NAME}/logs", ServiceLogsHandler),
]
