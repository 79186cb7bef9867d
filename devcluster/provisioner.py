"""devcluster's local-path volume provisioner (an external provisioner).

Run as ``python -m devcluster.provisioner --state-dir DIR`` (daemon
``provisioner``, identity ``state.component_kubeconfig("provisioner")``).

For every pending PVC of a StorageClass whose provisioner is
``kubelab.io/local-path`` (the default class ``local-path``, see
``storageclass_manifest``) it creates a PersistentVolume named
``pvc-<claim uid>``: a hostPath directory ``<state>/volumes/<pv name>``
(DirectoryOrCreate), the claim's size and access modes, a claimRef to the claim
and the class's reclaim policy. kube-controller-manager's PV controller then
binds the two. When a PV of ours is Released and its policy is Delete, the
directory and the PV are deleted.

The controller is level-triggered: it reconciles everything on start, on any
PVC/PV watch event and every ``RESYNC`` seconds, so it is idempotent and safe
to restart at any time.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from .kube import MANAGED_BY, ApiError, Client, cluster_role_for_user
from .paths import State

log = logging.getLogger("devcluster.provisioner")

PROVISIONER = "kubelab.io/local-path"
CLASS_NAME = "local-path"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
STORAGE_PROVISIONER_ANNOTATIONS = ("volume.kubernetes.io/storage-provisioner",
                                   "volume.beta.kubernetes.io/storage-provisioner")
RESYNC = 30.0
DEFAULT_SIZE = "1Gi"


def storageclass_manifest() -> dict:
    """The default StorageClass ``local-path``."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": CLASS_NAME,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
        },
        "provisioner": PROVISIONER,
        "volumeBindingMode": "Immediate",
        "reclaimPolicy": "Delete",
    }


def rbac_manifests(user: str = "system:devcluster:provisioner") -> list[dict]:
    """ClusterRole + binding for the provisioner's identity."""
    return cluster_role_for_user("kubelab:devcluster-provisioner", user, [
        {"apiGroups": [""], "resources": ["persistentvolumes"],
         "verbs": ["get", "list", "watch", "create", "delete", "patch", "update"]},
        {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ])


# -- pure decisions ---------------------------------------------------------------
def volumes_dir(state: State) -> Path:
    return state.root / "volumes"


def pv_name(pvc: dict) -> str:
    return f"pvc-{pvc['metadata']['uid']}"


def our_classes(classes: list[dict]) -> dict[str, dict]:
    return {c["metadata"]["name"]: c for c in classes if c.get("provisioner") == PROVISIONER}


def wants_provisioning(pvc: dict, classes: dict[str, dict]) -> bool:
    """A claim that is ours and still needs a volume."""
    meta, spec = pvc.get("metadata", {}), pvc.get("spec", {})
    if meta.get("deletionTimestamp") or spec.get("volumeName"):
        return False
    if (pvc.get("status") or {}).get("phase", "Pending") != "Pending":
        return False
    ann = meta.get("annotations") or {}
    cls = spec.get("storageClassName")
    ours = cls in classes or cls == CLASS_NAME or any(ann.get(a) == PROVISIONER
                                                      for a in STORAGE_PROVISIONER_ANNOTATIONS)
    if not ours:
        return False
    if spec.get("selector") or spec.get("dataSource") or spec.get("dataSourceRef"):
        return False  # like other dynamic provisioners: cannot honour these
    return spec.get("volumeMode", "Filesystem") == "Filesystem"


def pv_manifest(pvc: dict, path: Path, classes: dict[str, dict]) -> dict:
    """The PersistentVolume for ``pvc`` with its data at ``path``."""
    meta, spec = pvc["metadata"], pvc["spec"]
    cls_name = spec.get("storageClassName") or CLASS_NAME
    cls = classes.get(cls_name) or {}
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage") or DEFAULT_SIZE
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": pv_name(pvc),
            "annotations": {PROVISIONED_BY: PROVISIONER},
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
        },
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": cls.get("reclaimPolicy") or "Delete",
            "storageClassName": cls_name,
            "volumeMode": "Filesystem",
            "mountOptions": cls.get("mountOptions") or None,
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
        },
    }


def wants_deletion(pv: dict) -> bool:
    meta, spec = pv.get("metadata", {}), pv.get("spec", {})
    return ((meta.get("annotations") or {}).get(PROVISIONED_BY) == PROVISIONER
            and (pv.get("status") or {}).get("phase") in ("Released", "Failed")
            and spec.get("persistentVolumeReclaimPolicy") == "Delete"
            and not meta.get("deletionTimestamp"))


# -- the controller ------------------------------------------------------------------
class Provisioner:
    def __init__(self, client: Client, state: State):
        self.client = client
        self.state = state
        self.root = volumes_dir(state)

    def reconcile(self) -> dict:
        """One full pass; returns what it did (for logs and tests)."""
        c = self.client
        classes = our_classes(c.list("/apis/storage.k8s.io/v1/storageclasses").get("items") or [])
        pvcs = c.list("/api/v1/persistentvolumeclaims").get("items") or []
        pvs = c.list("/api/v1/persistentvolumes").get("items") or []
        names = {pv["metadata"]["name"] for pv in pvs}
        claimed = {((pv.get("spec") or {}).get("claimRef") or {}).get("uid") for pv in pvs}
        done = {"created": [], "deleted": []}
        for pvc in pvcs:
            if wants_provisioning(pvc, classes) and pv_name(pvc) not in names \
                    and pvc["metadata"]["uid"] not in claimed:
                try:
                    self.provision(pvc, classes)
                    done["created"].append(pv_name(pvc))
                except Exception as e:  # one bad claim must not stop the others
                    log.exception("provisioning %s/%s", pvc["metadata"]["namespace"], pvc["metadata"]["name"])
                    self.event(pvc, "Warning", "ProvisioningFailed", str(e))
        for pv in pvs:
            if wants_deletion(pv):
                try:
                    self.delete(pv)
                    done["deleted"].append(pv["metadata"]["name"])
                except Exception:
                    log.exception("deleting %s", pv["metadata"]["name"])
        return done

    def provision(self, pvc: dict, classes: dict[str, dict]) -> None:
        name = pv_name(pvc)
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)  # pods may run as any user
        pv = pv_manifest(pvc, path, classes)
        if pv["spec"]["mountOptions"] is None:
            del pv["spec"]["mountOptions"]
        try:
            self.client.create("/api/v1/persistentvolumes", pv)
        except ApiError as e:
            if e.status != 409:
                raise
        ns, claim = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
        log.info("provisioned %s for %s/%s at %s", name, ns, claim, path)
        self.event(pvc, "Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {name}")

    def delete(self, pv: dict) -> None:
        name = pv["metadata"]["name"]
        path = Path(((pv.get("spec") or {}).get("hostPath") or {}).get("path") or "")
        # Only ever remove our own directory: <state>/volumes/<pv name>.
        if path == self.root / name and path.resolve().parent == self.root.resolve():
            shutil.rmtree(path, ignore_errors=True)
        else:
            log.warning("PV %s: hostPath %s is not %s; leaving it", name, path, self.root / name)
        self.client.delete(Client.path("v1", "persistentvolumes", name=name))
        log.info("deleted %s and its directory", name)

    def event(self, pvc: dict, type_: str, reason: str, message: str) -> None:
        meta = pvc["metadata"]
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        ev = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                               "name": meta["name"], "uid": meta["uid"],
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": PROVISIONER},
            "reportingComponent": PROVISIONER,
            "reportingInstance": "devcluster",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.client.create(Client.path("v1", "events", meta["namespace"]), ev)
        except Exception as e:  # events are best effort
            log.debug("event for %s/%s: %s", meta["namespace"], meta["name"], e)


def _watch_kicks(client: Client, path: str, kick: threading.Event, stop: threading.Event) -> None:
    """Set ``kick`` on every change of ``path``'s objects; reconnects forever."""
    rv = None
    while not stop.is_set():
        try:
            if rv is None:
                rv = client.list(path, limit=1)["metadata"]["resourceVersion"]
            for ev in client.watch(path, resource_version=rv, timeout_seconds=240):
                obj = ev.get("object") or {}
                if ev.get("type") == "ERROR":
                    rv = None
                    break
                rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                if ev.get("type") != "BOOKMARK":
                    kick.set()
        except Exception as e:
            log.warning("watch %s: %s", path, e)
            rv = None
            stop.wait(2.0)


def run(client: Client, state: State, stop: threading.Event, resync: float = RESYNC) -> None:
    prov = Provisioner(client, state)
    kick = threading.Event()
    for path in ("/api/v1/persistentvolumeclaims", "/api/v1/persistentvolumes"):
        threading.Thread(target=_watch_kicks, args=(client, path, kick, stop), daemon=True,
                         name=f"watch{path}").start()
    while not stop.is_set():
        kick.clear()
        try:
            done = prov.reconcile()
            if done["created"] or done["deleted"]:
                log.info("reconciled: %s", done)
        except Exception as e:  # apiserver down, RBAC not there yet, ...
            log.warning("reconcile: %s", e)
            stop.wait(2.0)
            continue
        deadline = time.monotonic() + resync
        while not stop.is_set() and not kick.wait(0.5) and time.monotonic() < deadline:
            pass
        stop.wait(0.2)  # let a burst of events settle


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devcluster.provisioner", description="local-path provisioner")
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--kubeconfig", type=Path, default=None,
                   help="default: the state's kubeconfigs/provisioner.kubeconfig")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    state = State(a.state_dir.resolve()) if a.state_dir else State.default()
    client = Client.from_kubeconfig(a.kubeconfig or state.component_kubeconfig("provisioner"))
    volumes_dir(state).mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log.info("provisioner %s for volumes under %s", PROVISIONER, volumes_dir(state))
    try:
        run(client, state, stop)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
