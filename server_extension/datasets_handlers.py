"""REST handlers for datasets under ``{base_url}kubelab/api/datasets``: thin shells over
:class:`~kubelab.server_extension.services.datasets.DatasetService` (see ``openapi.yaml``).

Query values are handed to the service as they come; the service checks them
(keys and prefixes against the user's roots, page sizes, row counts).
"""
from __future__ import annotations

from .handlers import API, NAME, KubelabHandler, api
from .services import BadRequest

class DatasetsHandler(KubelabHandler):
    def arg(self, name: str, default: str | None = None) -> str | None:
        return self.get_query_argument(name, default)


class BrowseHandler(DatasetsHandler):
    @api
    async def get(self) -> None:
        ds = self.services.datasets
        self.reply(await self.run(ds.browse, self.arg("prefix", ""), self.arg("token"), self.arg("page_size"),
                                  self.bool_arg("recursive")))


class ObjectHandler(DatasetsHandler):
    @api
    async def get(self) -> None:
        self.reply(await self.run(self.services.datasets.object, self.arg("key")))


class PreviewHandler(DatasetsHandler):
    @api
    async def get(self) -> None:
        self.reply(await self.run(self.services.datasets.preview, self.arg("key"), self.arg("rows")))


class SnippetHandler(DatasetsHandler):
    @api
    async def get(self) -> None:
        self.reply(await self.run(self.services.datasets.snippet, self.arg("key")))


class RegisteredHandler(DatasetsHandler):
    @api
    async def get(self) -> None:
        self.reply(await self.run(self.services.datasets.registered, self.arg("q"), self.arg("tag"),
                                  self.arg("scope")))

    @api
    async def post(self) -> None:
        self.reply(await self.run(self.services.datasets.register, self.json_body()), 201)


class RegisteredDatasetHandler(DatasetsHandler):
    @api
    async def get(self, name: str) -> None:
        self.reply(await self.run(self.services.datasets.get_registered, name))

    @api
    async def delete(self, name: str) -> None:
        await self.run(self.services.datasets.unregister, name)
        self.set_status(204)
        self.finish()


class TransfersHandler(DatasetsHandler):
    @api
    async def get(self) -> None:
        self.reply({"transfers": await self.run(self.services.datasets.transfers)})

    @api
    async def post(self) -> None:
        body = self.json_body()
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        self.reply(await self.run(self.services.datasets.start_transfer, body), 201)


class TransferHandler(DatasetsHandler):
    @api
    async def get(self, name: str) -> None:
        self.reply(await self.run(self.services.datasets.transfer, name))


DATASET_HANDLERS: list[tuple[str, type]] = [
    (rf"/{API}/datasets/browse", BrowseHandler),
    (rf"/{API}/datasets/object", ObjectHandler),
    (rf"/{API}/datasets/preview", PreviewHandler),
    (rf"/{API}/datasets/snippet", SnippetHandler),
    (rf"/{API}/datasets/registered", RegisteredHandler),
    (rf"/{API}/datasets/registered/{NAME}", RegisteredDatasetHandler),
    (rf"/{API}/datasets/transfers", TransfersHandler),
    (rf"/{API}/datasets/transfers/{NAME}", TransferHandler),
]
