"""The user's workspace: who they are, their namespace client, and their home.

Every service acts through one :class:`Workspace`: the settings the spawner
put in ``KUBELAB_SETTINGS``, a Kubernetes client that uses the server pod's
own ServiceAccount (so RBAC confines it to the user's namespace), and the
home directory as this server sees it.
"""
from __future__ import annotations

import os
import shutil
from functools import cached_property
from typing import Any

from traitlets import Float, Unicode
from traitlets.config import LoggingConfigurable

from kubelab.core.names import is_dns_label
from kubelab.core.settings import SettingsError, WorkspaceSettings
from kubelab.core.workloads import WorkloadError, home_relative

from ..kube import KubeClient, KubeError
from .errors import BadRequest, NotFound, Unavailable, from_kube


class Workspace(LoggingConfigurable):
    settings_json = Unicode(
        "",
        config=True,
        help="""
        The workspace settings as JSON. Empty (the default) reads
        ``$KUBELAB_SETTINGS``, which KubelabSpawner sets on every server; set
        it only to run the extension outside a spawned server.

        Example::

            c.Workspace.settings_json = open("settings.json").read()
        """,
    )
    api_server = Unicode(
        "",
        config=True,
        help="""
        Kubernetes API URL. Empty (the default) uses the in-cluster
        ServiceAccount of the server's pod.

        Example::

            c.Workspace.api_server = "https://127.0.0.1:6443"
        """,
    )
    api_token = Unicode(
        "",
        config=True,
        help="""
        Bearer token for ``api_server`` (only with ``api_server``).

        Example::

            c.Workspace.api_token = os.environ["KUBELAB_TOKEN"]
        """,
    )
    api_ca_file = Unicode(
        "",
        config=True,
        help="""
        CA bundle that signs ``api_server``'s certificate (only with ``api_server``).

        Example::

            c.Workspace.api_ca_file = "/etc/kubelab/ca.crt"
        """,
    )
    api_timeout = Float(
        30.0,
        config=True,
        help="""
        Seconds to wait for one Kubernetes API request.

        Example::

            c.Workspace.api_timeout = 10
        """,
    )
    home_dir = Unicode(
        "",
        config=True,
        help="""
        Where this server sees the user's home. Empty (the default) is the
        home path of the settings (``/home/jovyan``), where workloads mount it too.

        Example::

            c.Workspace.home_dir = "/mnt/s3/users/alice"
        """,
    )

    @cached_property
    def settings(self) -> WorkspaceSettings:
        try:
            if self.settings_json:
                return WorkspaceSettings.from_json(self.settings_json)
            return WorkspaceSettings.from_env()
        except SettingsError as e:
            raise Unavailable(str(e)) from None

    @cached_property
    def kube(self) -> KubeClient:
        namespace = self.settings.namespace  # no settings: say so first
        try:
            if self.api_server:
                return KubeClient(self.api_server, token=self.api_token or None, ca=self.api_ca_file or None,
                                  namespace=namespace, timeout=self.api_timeout)
            client = KubeClient.in_cluster(self.api_timeout)
        except KubeError as e:
            raise Unavailable(e.message) from None
        client.namespace = namespace
        return client

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    # -- the home, as files ---------------------------------------------------------------------------
    @property
    def home(self) -> str:
        return self.home_dir or self.settings.home_path

    def home_path(self, path: str, what: str = "path") -> tuple[str, str]:
        """``(relative, local)`` for a path in the home; refuses escapes, also by symlink."""
        try:
            rel = home_relative(path, self.settings.home_path, what)
        except WorkloadError as e:
            raise BadRequest(str(e)) from None
        local = os.path.join(self.home, rel)
        real_home = os.path.realpath(self.home)
        if os.path.commonpath([os.path.realpath(local), real_home]) != real_home:
            raise BadRequest(f"{what} {path!r} is outside your home")
        return rel, local

    def require_file(self, path: str, what: str) -> str:
        rel, local = self.home_path(path, what)
        if not os.path.isfile(local):
            raise BadRequest(f"{what} {rel!r} was not found in your home")
        return rel

    def copy_in_home(self, src_rel: str, dst_rel: str) -> None:
        src, dst = os.path.join(self.home, src_rel), os.path.join(self.home, dst_rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)

    def write_in_home(self, rel: str, text: str) -> None:
        dst = os.path.join(self.home, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "w") as f:
            f.write(text)

    def remove_in_home(self, rel: str) -> None:
        shutil.rmtree(os.path.join(self.home, rel), ignore_errors=True)

    def local(self, rel: str) -> str:
        return os.path.join(self.home, rel)

    # -- cluster reads shared by the services ---------------------------------------------------------
    def call(self, fn, *args: Any, what: str = "", **kw: Any) -> Any:
        """Run a client call; apiserver errors become service errors."""
        try:
            return fn(*args, **kw)
        except KubeError as e:
            raise from_kube(e, what) from None

    def pods(self, selector: str) -> list[dict]:
        return self.call(self.kube.items, "v1", "Pod", label_selector=selector)

    def events_for(self, names: set[str], since: str | None = None) -> list[dict]:
        """Events about the named objects in the namespace, oldest first.

        ``since`` (the object's creationTimestamp) drops events of an earlier
        object of the same name (a job deleted and submitted again)."""
        def when(e: dict) -> str:
            return e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp") or ""
        evs = [e for e in self.call(self.kube.items, "v1", "Event")
               if e.get("involvedObject", {}).get("name") in names and (not since or when(e)[:19] >= since[:19])]
        evs.sort(key=when)
        return evs

    def require(self, api_version: str, kind: str, name: str, label: tuple[str, str], what: str) -> dict:
        """A kubelab object of this user's, or NotFound (also for objects kubelab did not make)."""
        if not is_dns_label(name):  # such a name cannot exist; never put it in a URL
            raise NotFound(f"{what} {name!r} not found")
        obj = self.call(self.kube.get, api_version, kind, name)
        if obj is None or obj["metadata"].get("labels", {}).get(label[0]) != label[1]:
            raise NotFound(f"{what} {name!r} not found")
        return obj


def event_view(ev: dict) -> dict:
    return {"type": ev.get("type"), "reason": ev.get("reason"), "message": (ev.get("message") or "").strip(),
            "object": f"{ev.get('involvedObject', {}).get('kind')}/{ev.get('involvedObject', {}).get('name')}",
            "count": ev.get("count") or 1,
            "time": ev.get("lastTimestamp") or ev.get("eventTime") or ev["metadata"].get("creationTimestamp")}
