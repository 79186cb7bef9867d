"""The agent's two inputs: the nodes it serves (nodes.yaml) and how images map
to local environments (images.yaml)."""
from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..paths import KUBELET_BASE_PORT, POD_CIDR, REPO

# Capacity every node reports unless nodes.yaml says otherwise; the scheduler
# refuses pods requesting ephemeral-storage on a node that has none.
DEFAULT_CAPACITY = {"ephemeral-storage": "100Gi"}
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


class ConfigError(Exception):
    """nodes.yaml or images.yaml is malformed."""


@dataclass(frozen=True)
class NodeConfig:
    """One node as nodes.yaml declares it."""

    name: str
    index: int
    pod_cidr: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, Any]] = field(default_factory=list)
    capacity: dict[str, str] = field(default_factory=dict)
    # Host path prefixes every node has a private copy of (nodes.yaml ``nodeLocalPaths``).
    local_paths: tuple[str, ...] = ()

    @property
    def kubelet_port(self) -> int:
        return KUBELET_BASE_PORT + self.index

    @property
    def gpu_count(self) -> int:
        return int(self.capacity.get("nvidia.com/gpu", "0"))


def _local_paths(path: Path, raw: Any) -> tuple[str, ...]:
    """``nodeLocalPaths``: absolute, normalized host paths other than /."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: nodeLocalPaths must be a list of absolute paths")
    out = []
    for item in raw:
        text = str(item)
        norm = os.path.normpath(text)
        if not os.path.isabs(text) or norm == "/":
            raise ConfigError(f"{path}: nodeLocalPaths entry {text!r} must be an absolute path other than /")
        out.append(norm)
    return tuple(out)


def load_nodes(path: Path) -> list[NodeConfig]:
    """Parse nodes.yaml; every pod CIDR must lie inside the cluster pod CIDR."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    local_paths = _local_paths(path, data.get("nodeLocalPaths"))
    cluster_net = ipaddress.ip_network(POD_CIDR)
    nodes: list[NodeConfig] = []
    for index, raw in enumerate(data.get("nodes") or []):
        try:
            name = str(raw["name"])
            cidr = str(raw["podCIDR"])
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{path}: node #{index} needs name and podCIDR") from e
        net = ipaddress.ip_network(cidr)
        if not net.subnet_of(cluster_net):  # type: ignore[arg-type]
            raise ConfigError(f"{path}: podCIDR {cidr} of {name} is outside {POD_CIDR}")
        capacity = {**DEFAULT_CAPACITY, **{str(k): str(v) for k, v in (raw.get("capacity") or {}).items()}}
        nodes.append(NodeConfig(
            name=name,
            index=index,
            pod_cidr=cidr,
            labels={str(k): str(v) for k, v in (raw.get("labels") or {}).items()},
            taints=list(raw.get("taints") or []),
            capacity=capacity,
            local_paths=local_paths,
        ))
    if len({n.name for n in nodes}) != len(nodes):
        raise ConfigError(f"{path}: node names must be unique")
    return nodes


@dataclass(frozen=True)
class ResolvedImage:
    """What an image reference means on this machine."""

    image: str
    environment: str
    venv: Path | None
    env: dict[str, str]
    command: list[str] | None

    @property
    def image_id(self) -> str:
        digest = hashlib.sha256(f"{self.environment}:{self.venv}".encode()).hexdigest()
        return f"kubelab-env://{self.environment}@sha256:{digest}"

    def base_env(self) -> dict[str, str]:
        """PATH (the venv's bin first) and VIRTUAL_ENV, plus the environment's own variables."""
        env: dict[str, str] = {}
        if self.venv is not None:
            env["PATH"] = f"{self.venv}/bin:{BASE_PATH}"
            env["VIRTUAL_ENV"] = str(self.venv)
        else:
            env["PATH"] = BASE_PATH
        env.update(self.env)
        return env


def _expand(value: str) -> str:
    return value.replace("${REPO}", str(REPO))


def _normalized_refs(image: str) -> list[str]:
    """``image`` plus the short forms Docker Hub references have."""
    refs = [image]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if image.startswith(prefix):
            refs.append(image[len(prefix):])
    return refs


class ImageCatalog:
    """The rules of images.yaml, reloaded when the file changes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._mtime: float | None = None
        self._rules: list[dict[str, Any]] = []
        self._environments: dict[str, dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        mtime = os.stat(self.path).st_mtime
        if mtime == self._mtime:
            return
        data = yaml.safe_load(self.path.read_text()) or {}
        environments = data.get("environments") or {}
        rules = data.get("images") or []
        for rule in rules:
            if "match" not in rule or rule.get("environment") not in environments:
                raise ConfigError(f"{self.path}: rule {rule!r} needs match and a known environment")
        self._environments, self._rules, self._mtime = environments, rules, mtime

    def resolve(self, image: str) -> ResolvedImage | None:
        """The first rule matching ``image``, or None (the pod sees ErrImagePull)."""
        try:
            self._load()
        except (OSError, ConfigError, yaml.YAMLError):
            pass  # keep the last good rules
        refs = _normalized_refs(image)
        for rule in self._rules:
            if any(fnmatch.fnmatchcase(ref, str(rule["match"])) for ref in refs):
                name = str(rule["environment"])
                envdef = self._environments[name] or {}
                venv = Path(_expand(str(envdef["venv"]))) if envdef.get("venv") else None
                command = rule.get("command")
                return ResolvedImage(
                    image=image,
                    environment=name,
                    venv=venv,
                    env={str(k): _expand(str(v)) for k, v in (envdef.get("env") or {}).items()},
                    command=[_expand(str(c)) for c in command] if command else None,
                )
        return None
