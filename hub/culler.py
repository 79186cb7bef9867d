"""Idle culling per resource group, as a hub-managed JupyterHub service.

GPU servers can be culled after 30 minutes idle while CPU servers keep 8 hours:
each server's timeout is the ``idle_timeout`` of the resource group it was
started in (from its ``user_options``).

Run by the hub (see ``kubelab.hub.config.culler_service``)::

    python -m kubelab.hub.culler --timeouts '{"cpu": 28800, "gpu-a100": 1800}' --default-timeout 3600
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Iterable

import requests

log = logging.getLogger("kubelab.culler")


@dataclass(frozen=True)
class Cull:
    user: str
    server: str
    group: str
    idle_seconds: float


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def servers_to_cull(users: Iterable[dict], timeouts: dict[str, int], default_timeout: int,
                    now: dt.datetime) -> list[Cull]:
    """Pure decision: which running servers have been idle longer than their group allows."""
    out = []
    for user in users:
        for name, server in (user.get("servers") or {}).items():
            if not server.get("ready") or server.get("pending"):
                continue
            group = (server.get("user_options") or {}).get("resource_group") or ""
            limit = timeouts.get(group, default_timeout)
            if limit <= 0:
                continue
            last = _parse_time(server.get("last_activity")) or _parse_time(server.get("started"))
            if last is None:
                continue
            idle = (now - last).total_seconds()
            if idle > limit:
                out.append(Cull(user["name"], name, group, idle))
    return out


class HubAPI:
    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"token {token}"

    def active_users(self) -> list[dict]:
        users, offset = [], 0
        while True:
            r = self.s.get(f"{self.url}/users", params={"state": "active", "offset": offset, "limit": 200},
                           headers={"Accept": "application/jupyterhub-pagination+json"}, timeout=30)
            r.raise_for_status()
            body = r.json()
            items = body["items"] if isinstance(body, dict) else body
            users.extend(items)
            nxt = body.get("_pagination", {}).get("next") if isinstance(body, dict) else None
            if not nxt:
                return users
            offset = nxt["offset"]

    def stop(self, user: str, server: str) -> None:
        path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
        r = self.s.delete(self.url + path, timeout=30)
        if r.status_code not in (202, 204, 400, 404):
            r.raise_for_status()


def cull_once(api: HubAPI, timeouts: dict[str, int], default_timeout: int) -> list[Cull]:
    culls = servers_to_cull(api.active_users(), timeouts, default_timeout, dt.datetime.now(dt.timezone.utc))
    for c in culls:
        log.info("culling %s/%s (group %s, idle %.0fs)", c.user, c.server or "default", c.group, c.idle_seconds)
        api.stop(c.user, c.server)
    return culls


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeouts", default=os.environ.get("KUBELAB_IDLE_TIMEOUTS", "{}"),
                    help="JSON object: resource group -> idle timeout in seconds")
    ap.add_argument("--default-timeout", type=int, default=3600, help="for servers of unknown groups; 0 = never")
    ap.add_argument("--interval", type=int, default=60, help="seconds between checks")
    ap.add_argument("--once", action="store_true", help="check once and exit")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    api = HubAPI(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
    timeouts = {k: int(v) for k, v in json.loads(args.timeouts).items()}
    while True:
        try:
            cull_once(api, timeouts, args.default_timeout)
        except requests.RequestException as e:
            log.warning("hub API not reachable: %s", e)
        if args.once:
            return 0
        time.sleep(args.interval)


if __name__ == "__main__":
    raise SystemExit(main())
