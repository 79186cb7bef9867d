"""What the hub tells a user's server about its workspace (pure).

The spawner serializes a :class:`WorkspaceSettings` into the server's
``KUBELAB_SETTINGS`` environment variable; the server extension and the
magics read it back. It names the namespace, the image workloads run in, how
home and datasets are mounted, and the resource groups this user may submit
work to. It is a convenience, not a security boundary: the namespace's
ResourceQuota, the admission policy and RBAC enforce the limits.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from . import resource_groups as rg
from .names import safe_slug
from .s3layout import DATASETS_PREFIX, user_prefix

ENV_VAR = "KUBELAB_SETTINGS"


class SettingsError(ValueError):
    """The server was not started by KubelabSpawner (or its settings are broken)."""


@dataclass(frozen=True)
class WorkspaceSettings:
    user: str
    namespace: str
    image: str
    resource_groups: tuple[rg.ResourceGroup, ...] = ()
    default_group: str = ""
    home_path: str = "/home/jovyan"
    s3_mount_host_path: str = "/var/lib/kubelab/s3"
    uid: int | None = 1000
    gid: int | None = 100
    image_pull_policy: str = "IfNotPresent"
    env: dict[str, str] = field(default_factory=dict)

    @property
    def user_slug(self) -> str:
        return safe_slug(self.user)

    @property
    def home_subpath(self) -> str:
        """The home's subPath in the node's S3 mount: ``users/<user>``."""
        return user_prefix(self.user).rstrip("/")

    @property
    def datasets_subpath(self) -> str:
        return DATASETS_PREFIX.rstrip("/")

    @property
    def datasets_path(self) -> str:
        return f"{self.home_path}/datasets"

    def group(self, name: str | None) -> rg.ResourceGroup:
        """The named group (or the default); KeyError names the choices."""
        name = name or self.default_group or (self.resource_groups[0].name if self.resource_groups else "")
        for g in self.resource_groups:
            if g.name == name:
                return g
        choices = ", ".join(g.name for g in self.resource_groups) or "none"
        raise KeyError(f"you may not use resource group {name!r}; your groups: {choices}")

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.user, "namespace": self.namespace, "image": self.image,
                "resource_groups": [g.to_dict() for g in self.resource_groups],
                "default_group": self.default_group, "home_path": self.home_path,
                "s3_mount_host_path": self.s3_mount_host_path, "uid": self.uid, "gid": self.gid,
                "image_pull_policy": self.image_pull_policy, "env": dict(self.env)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "WorkspaceSettings":
        try:
            groups = [rg.from_dict(g) for g in d.get("resource_groups", ())]
            return cls(user=str(d["user"]), namespace=str(d["namespace"]), image=str(d["image"]),
                       resource_groups=tuple(groups), default_group=str(d.get("default_group", "")),
                       home_path=str(d.get("home_path", "/home/jovyan")),
                       s3_mount_host_path=str(d.get("s3_mount_host_path", "/var/lib/kubelab/s3")),
                       uid=d.get("uid", 1000), gid=d.get("gid", 100),
                       image_pull_policy=str(d.get("image_pull_policy", "IfNotPresent")),
                       env={str(k): str(v) for k, v in (d.get("env") or {}).items()})
        except (KeyError, TypeError, ValueError) as e:
            raise SettingsError(f"invalid {ENV_VAR}: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> "WorkspaceSettings":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise SettingsError(f"invalid {ENV_VAR}: {e}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "WorkspaceSettings":
        environ = os.environ if environ is None else environ
        text = environ.get(ENV_VAR)
        if not text:
            raise SettingsError(f"{ENV_VAR} is not set: this server was not started by KubelabSpawner")
        return cls.from_json(text)
