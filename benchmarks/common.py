"""Helpers the benchmarks share: percentiles, formatting, and the shared hub."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import requests

from devcluster import cluster
from devcluster import hub as devhub
from devcluster import s3 as devs3
from devcluster.paths import State
from tests.hubclient import Hub


def pct(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of the values that are not None."""
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def fmt(x: float | None, width: int = 7, digits: int = 2) -> str:
    return f"{x:{width}.{digits}f}" if x is not None else f"{'-':>{width}}"


def say(msg: str) -> None:
    print(msg, flush=True)


def hub_up(state: State) -> Hub:
    """The running hub (never restarted: others share it), started only when it is not up."""
    if not cluster.status(state)["running"]:
        say("devcluster is not running: starting it")
        cluster.up(state)
    try:
        up = requests.get(f"{devhub.HUB_URL}/hub/api/", timeout=5).status_code == 200
    except requests.RequestException:
        up = False
    url = devhub.HUB_URL if up else devhub.up(state)
    return Hub(url, devhub.test_token(state))


def machine() -> str:
    """One line naming this machine: host, CPUs, memory, kernel, Python."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor() or "?")
    mem = next((int(ln.split()[1]) // 2**20 for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), 0)
    return (f"machine: {platform.node()}, {os.cpu_count()} CPUs ({cpu}), {mem} GiB RAM, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def admin_s3(state: State):
    """boto3 with the platform's (root) credentials, a pool big enough for the writer threads."""
    import boto3
    from botocore.config import Config

    env = devs3.env(state)
    client = boto3.client("s3", endpoint_url=env.get("AWS_ENDPOINT_URL", devs3.ENDPOINT), region_name=devs3.REGION,
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                          config=Config(s3={"addressing_style": "path"}, max_pool_connections=64,
                                        retries={"max_attempts": 5, "mode": "standard"}))
    return client, devs3.bucket_name(state)
