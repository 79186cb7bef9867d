"""The admin service's async client of the JupyterHub REST API (its own service token)."""
from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote, urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

PAGE = 200  # JupyterHub's default api_page_max_limit


class HubAPIError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class AsyncHubAPI:
    def __init__(self, url: str, token: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.http = AsyncHTTPClient()

    async def _get(self, path: str, params: dict[str, Any] | None = None, paginated: bool = False) -> Any:
        url = f"{self.url}{path}" + (f"?{urlencode(params)}" if params else "")
        headers = {"Authorization": f"token {self.token}"}
        if paginated:
            headers["Accept"] = "application/jupyterhub-pagination+json"
        try:
            r = await self.http.fetch(HTTPRequest(url, headers=headers, request_timeout=self.timeout))
        except HTTPClientError as e:
            if e.code == 404:
                return None
            body = e.response.body.decode("utf-8", "replace") if e.response is not None else ""
            raise HubAPIError(e.code, f"JupyterHub API {path}: {e.code} {body[:200]}") from None
        except OSError as e:
            raise HubAPIError(502, f"JupyterHub API not reachable: {e}") from None
        return json.loads(r.body)

    async def users(self) -> list[dict]:
        """Every hub user (with servers and groups): the first page, then the rest concurrently."""
        first = await self._get("/users", {"offset": 0, "limit": PAGE}, paginated=True)
        items = list(first["items"])
        total = first.get("_pagination", {}).get("total", len(items))
        limit = first.get("_pagination", {}).get("limit", PAGE) or PAGE
        rest = await asyncio.gather(*(self._get("/users", {"offset": off, "limit": limit}, paginated=True)
                                      for off in range(len(items), total, limit)))
        for page in rest:
            items.extend(page["items"])
        return items

    async def user(self, name: str) -> dict | None:
        return await self._get(f"/users/{quote(name, safe='')}")
