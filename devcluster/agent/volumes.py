"""Pod volumes: their contents on the host and the bind mounts of each container.

Every volume becomes a host path (a directory under the pod's state directory,
or the hostPath / persistent volume path itself). Volumes with projected
contents (configMap, secret, downwardAPI, projected) are written like the
kubelet's atomic writer: ``..data`` points at a timestamped directory and the
visible names are symlinks into it, so updates swap in atomically.
"""
from __future__ import annotations

import base64
import os
import shutil
import stat
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from ..kube import Client
from .apiobjects import ApiObjects
from .envvars import ContainerConfigError, expand, field_value, resource_ref_value
from .mounts import PRIVATE, PROPAGATION, RSHARED
from .store import HostPathRegistry, read_json, write_json

DEFAULT_MODE = 0o644
DEFAULT_TOKEN_SECONDS = 3600
TOKEN_REFRESH_FRACTION = 0.8
TOKEN_MAX_AGE = 24 * 3600


class VolumeError(Exception):
    """A volume cannot be set up (shown as a FailedMount event)."""


@dataclass(frozen=True)
class PreparedVolume:
    """A volume ready to be bound into containers."""

    name: str
    path: str
    read_only: bool = False


@dataclass(frozen=True)
class FileProjection:
    """One file of a projected volume."""

    data: bytes
    mode: int
    uid: int | None = None


@dataclass(frozen=True)
class Mount:
    """A bind mount inside a container's mount namespace.

    ``propagation`` is PRIVATE (mountPropagation None), RSLAVE (HostToContainer)
    or RSHARED (Bidirectional); see mounts.py.
    """

    source: str
    target: str
    read_only: bool
    is_file: bool
    propagation: str = PRIVATE


@dataclass(frozen=True)
class NodeLocalPaths:
    """Host paths each node has its own copy of (nodes.yaml ``nodeLocalPaths``).

    All nodes share one machine; a hostPath at or below one of ``prefixes`` is
    served from ``root`` + the path (``<state>/nodes/<node>/rootfs``), so every
    node has its own /var/lib/kubelab, like separate machines.
    """

    root: Path
    prefixes: tuple[str, ...] = ()

    def map(self, path: str) -> str:
        """Where hostPath ``path`` lives on this node."""
        norm = "/" + os.path.normpath(path).lstrip("/")
        if any(_within(norm, p) for p in self.prefixes):
            return str(self.root) + norm
        return path

    def contains(self, path: str) -> bool:
        """``path`` (a host path) lies in this node's root."""
        return bool(self.prefixes) and _within(path, str(self.root))


# -- atomic writer -----------------------------------------------------------

def _check_rel_path(rel: str) -> str:
    norm = os.path.normpath(rel)
    if not rel or os.path.isabs(rel) or norm.startswith("..") or norm.split("/")[0].startswith(".."):
        raise VolumeError(f"invalid path {rel!r} in volume projection")
    return norm


def _current_payload(data_dir: Path) -> dict[str, tuple[bytes, int]]:
    out: dict[str, tuple[bytes, int]] = {}
    for dirpath, _dirs, files in os.walk(data_dir):
        for f in files:
            p = Path(dirpath, f)
            out[str(p.relative_to(data_dir))] = (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
    return out


def write_atomic(target: Path, payload: dict[str, FileProjection], gid: int | None = None) -> bool:
    """Make ``target`` show exactly ``payload``; returns False when nothing changed."""
    payload = {_check_rel_path(k): v for k, v in payload.items()}
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / "..data"
    old_dir: Path | None = None
    if data_link.is_symlink():
        old_dir = target / os.readlink(data_link)
        wanted = {k: (v.data, v.mode) for k, v in payload.items()}
        if old_dir.is_dir() and _current_payload(old_dir) == wanted:
            return False
    new_dir = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.time_ns() % 10**9:09d}"
    new_dir.mkdir()
    for rel, proj in payload.items():
        p = new_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(proj.data)
        os.chmod(p, proj.mode)
        if proj.uid is not None or gid is not None:
            os.chown(p, -1 if proj.uid is None else proj.uid, -1 if gid is None else gid)
    os.chmod(new_dir, 0o755)
    tmp_link = target / "..data_tmp"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    os.symlink(new_dir.name, tmp_link)
    os.replace(tmp_link, data_link)
    top = {rel.split("/")[0] for rel in payload}
    for name in top:
        link = target / name
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link) if link.is_dir() else link.unlink()
            os.symlink(f"..data/{name}", link)
    for entry in os.listdir(target):
        if not entry.startswith("..") and entry not in top:
            p = target / entry
            if p.is_symlink() or p.is_file():
                p.unlink()
            else:
                shutil.rmtree(p, ignore_errors=True)
    if old_dir is not None and old_dir.is_dir() and old_dir != new_dir:
        shutil.rmtree(old_dir, ignore_errors=True)
    return True


# -- projections ---------------------------------------------------------------

def configmap_values(cm: dict[str, Any]) -> dict[str, bytes]:
    values = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    values.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return values


def secret_values(secret: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def key_projection(values: dict[str, bytes], items: list[dict[str, Any]] | None, default_mode: int,
                   optional: bool, missing_key: Callable[[str], str]) -> dict[str, FileProjection]:
    """Files for the keys of a configMap or secret (all of them, or ``items``)."""
    if not items:
        return {k: FileProjection(v, default_mode) for k, v in values.items()}
    out: dict[str, FileProjection] = {}
    for item in items:
        key = item["key"]
        if key not in values:
            if optional:
                continue
            raise VolumeError(missing_key(key))
        out[item.get("path") or key] = FileProjection(values[key], item.get("mode", default_mode))
    return out


def downward_projection(pod: dict[str, Any], items: list[dict[str, Any]], default_mode: int,
                        pod_ip: str | None, host_ip: str, allocatable: dict[str, str]) -> dict[str, FileProjection]:
    """Files of a downwardAPI volume (or projection)."""
    out: dict[str, FileProjection] = {}
    for item in items:
        try:
            if "fieldRef" in item:
                value = field_value(pod, item["fieldRef"]["fieldPath"], pod_ip, host_ip)
            elif "resourceFieldRef" in item:
                value = resource_ref_value(pod, None, item["resourceFieldRef"], allocatable)
            else:
                raise VolumeError(f"downwardAPI item {item.get('path')!r} has no source")
        except ContainerConfigError as e:
            raise VolumeError(str(e)) from e
        out[item["path"]] = FileProjection(value.encode(), item.get("mode", default_mode))
    return out


def pod_run_as(pod: dict[str, Any]) -> tuple[int | None, int | None]:
    """(runAsUser shared by all containers, fsGroup) of a pod, for file ownership."""
    spec = pod.get("spec") or {}
    psc = spec.get("securityContext") or {}
    users = set()
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        users.add((c.get("securityContext") or {}).get("runAsUser", psc.get("runAsUser")))
    uid = users.pop() if len(users) == 1 else None
    return uid, psc.get("fsGroup")


# -- volume manager --------------------------------------------------------------

class VolumeManager:
    """Sets up (and refreshes) the volumes of one pod."""

    def __init__(self, client: Client, objects: ApiObjects, pod_dir: Path, host_ip: str,
                 allocatable: dict[str, str], local_paths: NodeLocalPaths | None = None):
        self.client = client
        self.local_paths = local_paths
        self.objects = objects
        self.pod_dir = pod_dir
        self.host_ip = host_ip
        self.allocatable = allocatable
        self.tokens_file = pod_dir / "tokens.json"

    def prepare(self, pod: dict[str, Any], pod_ip: str | None) -> dict[str, PreparedVolume]:
        """Set up every volume of ``pod``; raises VolumeError naming the first that fails."""
        out: dict[str, PreparedVolume] = {}
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            name = vol["name"]
            try:
                out[name] = self._prepare(pod, vol, pod_ip)
            except VolumeError as e:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : {e}') from e
        return out

    def _prepare(self, pod: dict[str, Any], vol: dict[str, Any], pod_ip: str | None) -> PreparedVolume:
        name = vol["name"]
        meta = pod["metadata"]
        ns = meta["namespace"]
        local = self.pod_dir / "volumes" / name
        token_uid, fs_group = pod_run_as(pod)
        if "emptyDir" in vol:
            local.mkdir(parents=True, exist_ok=True)
            os.chmod(local, 0o777)
            return PreparedVolume(name, str(local))
        if "hostPath" in vol:
            return PreparedVolume(name, prepare_host_path(vol["hostPath"], self.local_paths))
        if "persistentVolumeClaim" in vol:
            src = vol["persistentVolumeClaim"]
            return PreparedVolume(name, self._claim_path(ns, src["claimName"]), bool(src.get("readOnly")))
        if "ephemeral" in vol:
            return PreparedVolume(name, self._claim_path(ns, f"{meta['name']}-{name}"))
        if "configMap" in vol:
            src = vol["configMap"]
            payload = self._configmap(ns, src, src.get("defaultMode", DEFAULT_MODE))
        elif "secret" in vol:
            src = vol["secret"]
            payload = self._secret(ns, {**src, "name": src.get("secretName")}, src.get("defaultMode", DEFAULT_MODE))
        elif "downwardAPI" in vol:
            src = vol["downwardAPI"]
            payload = downward_projection(pod, src.get("items") or [], src.get("defaultMode", DEFAULT_MODE),
                                          pod_ip, self.host_ip, self.allocatable)
        elif "projected" in vol:
            payload = self._projected(pod, vol["projected"], pod_ip, token_uid if fs_group is None else None)
        else:
            kinds = sorted(k for k in vol if k != "name")
            raise VolumeError(f"volume type {', '.join(kinds)} is not supported by devcluster")
        write_atomic(local, payload, fs_group)
        return PreparedVolume(name, str(local), read_only=True)

    def _configmap(self, ns: str, src: dict[str, Any], default_mode: int) -> dict[str, FileProjection]:
        cm = self.objects.configmap(ns, src["name"])
        if cm is None:
            if src.get("optional"):
                return {}
            raise VolumeError(f'configmap "{src["name"]}" not found')
        return key_projection(configmap_values(cm), src.get("items"), default_mode, bool(src.get("optional")),
                              lambda k: f"configmap references non-existent config key: {k}")

    def _secret(self, ns: str, src: dict[str, Any], default_mode: int) -> dict[str, FileProjection]:
        secret = self.objects.secret(ns, src["name"])
        if secret is None:
            if src.get("optional"):
                return {}
            raise VolumeError(f'secret "{src["name"]}" not found')
        return key_projection(secret_values(secret), src.get("items"), default_mode, bool(src.get("optional")),
                              lambda k: f"references non-existent secret key: {k}")

    def _projected(self, pod: dict[str, Any], src: dict[str, Any], pod_ip: str | None,
                   token_uid: int | None) -> dict[str, FileProjection]:
        ns = pod["metadata"]["namespace"]
        mode = src.get("defaultMode", DEFAULT_MODE)
        payload: dict[str, FileProjection] = {}
        for source in src.get("sources") or []:
            if "configMap" in source:
                payload.update(self._configmap(ns, source["configMap"], mode))
            elif "secret" in source:
                payload.update(self._secret(ns, source["secret"], mode))
            elif "downwardAPI" in source:
                payload.update(downward_projection(pod, source["downwardAPI"].get("items") or [], mode,
                                                   pod_ip, self.host_ip, self.allocatable))
            elif "serviceAccountToken" in source:
                tok = source["serviceAccountToken"]
                token = self.service_account_token(pod, tok.get("audience") or "",
                                                   int(tok.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS))
                payload[tok["path"]] = FileProjection(token.encode(), mode, token_uid)
            else:
                raise VolumeError(f"projected source {sorted(source)} is not supported by devcluster")
        return payload

    def service_account_token(self, pod: dict[str, Any], audience: str, seconds: int) -> str:
        """A pod-bound token from the TokenRequest API, reused until 80% of its life is over."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        sa = spec.get("serviceAccountName") or "default"
        key = f"{sa}|{audience}|{seconds}"
        cache = read_json(self.tokens_file) or {}
        entry = cache.get(key)
        now = time.time()
        if entry:
            life = entry["expires"] - entry["issued"]
            if now < entry["issued"] + min(life * TOKEN_REFRESH_FRACTION, TOKEN_MAX_AGE):
                return entry["token"]
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": seconds,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
            },
        }
        try:
            resp = self.client.create(
                self.client.path("v1", "serviceaccounts", meta["namespace"], sa, "token"), body)
        except Exception as e:
            raise VolumeError(f"failed to fetch token: {e}") from e
        expires = _parse_time(resp["status"]["expirationTimestamp"])
        cache[key] = {"token": resp["status"]["token"], "issued": now, "expires": expires}
        write_json(self.tokens_file, cache)
        return resp["status"]["token"]

    def _claim_path(self, ns: str, claim_name: str) -> str:
        claim = self.objects.claim(ns, claim_name)
        if claim is None:
            raise VolumeError(f'persistentvolumeclaim "{claim_name}" not found')
        pv_name = (claim.get("spec") or {}).get("volumeName")
        if not pv_name or (claim.get("status") or {}).get("phase") != "Bound":
            raise VolumeError(f'persistentvolumeclaim "{claim_name}" is not bound')
        pv = self.objects.volume(pv_name)
        if pv is None:
            raise VolumeError(f'persistentvolume "{pv_name}" not found')
        pv_spec = pv.get("spec") or {}
        path = (pv_spec.get("hostPath") or {}).get("path") or (pv_spec.get("local") or {}).get("path")
        if not path:
            raise VolumeError(f'persistentvolume "{pv_name}" has neither hostPath nor local path')
        if not os.path.isdir(path):
            os.makedirs(path, exist_ok=True)
            os.chmod(path, 0o777)
        return path


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def prepare_host_path(src: dict[str, Any], local_paths: NodeLocalPaths | None = None) -> str:
    """Check (or create) a hostPath volume according to its ``type``; returns its path on
    this node (node-local paths are mapped into the node's root)."""
    orig = src["path"]
    path = local_paths.map(orig) if local_paths is not None else orig
    kind = src.get("type") or ""
    try:
        if kind == "DirectoryOrCreate" or (not kind and path != orig and not os.path.lexists(path)):
            # Unset type: the container runtime creates a missing source as a directory;
            # only done for node-local paths (their node root starts out empty).
            os.makedirs(path, 0o755, exist_ok=True)
        elif kind == "FileOrCreate":
            if not os.path.exists(path):
                os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
                Path(path).touch(0o644)
    except OSError as e:
        raise VolumeError(f"hostPath {orig}: {e.strerror or e}") from e
    checks: dict[str, Callable[[os.stat_result], bool]] = {
        "Directory": lambda s: stat.S_ISDIR(s.st_mode),
        "DirectoryOrCreate": lambda s: stat.S_ISDIR(s.st_mode),
        "File": lambda s: stat.S_ISREG(s.st_mode),
        "FileOrCreate": lambda s: stat.S_ISREG(s.st_mode),
        "Socket": lambda s: stat.S_ISSOCK(s.st_mode),
        "CharDevice": lambda s: stat.S_ISCHR(s.st_mode),
        "BlockDevice": lambda s: stat.S_ISBLK(s.st_mode),
    }
    if kind in checks:
        try:
            st = os.stat(path)
        except FileNotFoundError as e:
            raise VolumeError(f"hostPath type check failed: {orig} does not exist") from e
        except OSError as e:
            raise VolumeError(f"hostPath type check failed: {orig}: {e.strerror or e}") from e
        if not checks[kind](st):
            raise VolumeError(f"hostPath type check failed: {orig} is not a {kind}")
    elif kind:
        raise VolumeError(f"unknown hostPath type {kind!r}")
    return path


# -- container mounts -----------------------------------------------------------

def _is_file(path: str) -> bool:
    """Mounted like a file: anything but a directory (regular file, device, socket)."""
    return os.path.lexists(path) and not os.path.isdir(path)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def container_mounts(container: dict[str, Any], volumes: dict[str, PreparedVolume], env: dict[str, str],
                     defaults: dict[str, str]) -> list[Mount]:
    """The bind mounts of one container, parents before children.

    ``defaults`` maps targets such as /etc/hosts to per-pod files; a volumeMount
    at the same target wins. SubPaths are created in their volume when missing.
    Raises VolumeError for a mount that names an unknown volume or escapes it,
    or asks for a propagation the container may not have.
    """
    mounts: list[Mount] = []
    privileged = bool((container.get("securityContext") or {}).get("privileged"))
    for vm in container.get("volumeMounts") or []:
        vol = volumes.get(vm["name"])
        if vol is None:
            raise VolumeError(f"volume {vm['name']!r} is not defined in the pod")
        mode = vm.get("mountPropagation")
        if mode not in PROPAGATION:
            raise VolumeError(f"invalid mountPropagation {mode!r} for volume {vm['name']!r}")
        propagation = PROPAGATION[mode]
        if propagation == RSHARED and not privileged:
            raise VolumeError("Bidirectional mount propagation is available only to privileged containers")
        source = vol.path
        sub = vm.get("subPath") or (expand(vm["subPathExpr"], env.get) if vm.get("subPathExpr") else "")
        if sub:
            if os.path.isabs(sub) or ".." in Path(sub).parts:
                raise VolumeError(f"invalid subPath {sub!r}: must be a relative path inside the volume")
            source = os.path.join(vol.path, sub)
            try:
                if not os.path.lexists(source):
                    os.makedirs(source, 0o777, exist_ok=True)
                real, real_root = os.path.realpath(source), os.path.realpath(vol.path)
            except OSError as e:
                raise VolumeError(f"failed to create subPath directory for volumeMount {vm['name']!r} "
                                  f"of container {container.get('name')!r}: {e.strerror or e}") from e
            if not _within(real, real_root):
                raise VolumeError(f"subPath {sub!r} of volume {vm['name']!r} points outside the volume")
            source = real
        mounts.append(Mount(source=source, target=os.path.normpath(vm["mountPath"]),
                            read_only=bool(vm.get("readOnly")) or vol.read_only,
                            is_file=_is_file(source), propagation=propagation))
    taken = {m.target for m in mounts}
    for target, source in defaults.items():
        if target not in taken:
            mounts.append(Mount(source=source, target=target, read_only=False, is_file=os.path.isfile(source)))
    mounts.sort(key=lambda m: len(Path(m.target).parts))
    return mounts


def prepare_working_dir(cwd: str, mounts: list[Mount], registry: HostPathRegistry, owner: str) -> None:
    """Create a missing working directory on the host (recorded like a mount target),
    unless it lies in a volume, where the shim creates it."""
    if os.path.isdir(cwd) or any(_within(cwd, m.target) for m in mounts):
        return
    try:
        registry.ensure(owner, os.path.normpath(cwd), False)
    except OSError as e:
        raise VolumeError(f"cannot create working directory {cwd}: {e}") from e


def prepare_targets(mounts: list[Mount], registry: HostPathRegistry, owner: str) -> None:
    """Make sure each mount target exists on the host.

    Targets under an earlier mount are created by the shim inside that volume;
    the others are created here if missing. The pod is recorded as a user of
    every agent-created path it relies on, so none is removed while in use.
    """
    done: list[str] = []
    for m in mounts:
        if any(_within(m.target, t) for t in done):
            done.append(m.target)
            continue
        done.append(m.target)
        if os.path.lexists(m.target):
            if m.is_file and os.path.isdir(m.target):
                raise VolumeError(f"cannot mount file {m.source} over directory {m.target}")
            if not m.is_file and not os.path.isdir(m.target):
                raise VolumeError(f"cannot mount directory {m.source} over file {m.target}")
        try:
            registry.ensure(owner, m.target, m.is_file)
        except OSError as e:
            raise VolumeError(f"cannot create mount point {m.target}: {e}") from e
