"""The node agent process: one NodeAgent per node of nodes.yaml, each with its own identity."""
from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from ..kube import Client
from ..paths import State
from .apiobjects import ApiObjects
from .cgroups import Cgroups
from .config import ImageCatalog, NodeConfig, load_nodes
from .containers import ContainerRuntime
from .context import NodeContext
from .events import EventRecorder
from .gpu import GpuAllocator
from .mounts import SharedMounts
from .network import IpAllocator, ensure_bridge
from .node import NodeRegistrar
from .pods import PodWorker
from .server import KubeletServer, LogNotAvailable, LogSource
from .store import HostPathRegistry, NodeStore, PodRecord
from .volumes import NodeLocalPaths

log = logging.getLogger(__name__)

RETRY = 5.0
WATCH_TIMEOUT = 300


def node_root(state: State, node: str) -> Path:
    """Where a node keeps its copy of the node-local host paths (nodes.yaml nodeLocalPaths)."""
    return state.root / "nodes" / node / "rootfs"


class NodeAgent:
    """Serves one node: registration, lease, pod watch, pod workers, kubelet endpoint."""

    def __init__(self, state: State, cfg: NodeConfig, images: ImageCatalog, cgroups: Cgroups,
                 host_paths: HostPathRegistry, shared_mounts: SharedMounts):
        self.state = state
        self.cfg = cfg
        client = Client.from_kubeconfig(state.component_kubeconfig(f"node-{cfg.name}"))
        store = NodeStore(state, cfg.name)
        records = store.records()
        live = [r for r in records if not r.torn_down]
        newest = max((r for r in records if r.ip and not r.host_network), key=lambda r: r.start_time, default=None)
        self.ctx = NodeContext(
            config=cfg, client=client, objects=ApiObjects(client), store=store,
            runtime=ContainerRuntime(store, cgroups), cgroups=cgroups, images=images,
            events=EventRecorder(client, cfg.name), host_paths=host_paths,
            ips=IpAllocator(cfg.pod_cidr, {r.uid: r.ip for r in live if r.ip and not r.host_network},
                            last=newest.ip if newest else None),
            gpus=GpuAllocator(cfg.gpu_count, {r.uid: r.gpus for r in live}),
            local_paths=NodeLocalPaths(node_root(state, cfg.name), cfg.local_paths),
            shared_mounts=shared_mounts,
        )
        self.registrar = NodeRegistrar(client, cfg)
        self.workers: dict[str, PodWorker] = {}
        self.finished: set[str] = set()
        self._lock = threading.Lock()
        self.server: KubeletServer | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, stop: threading.Event) -> None:
        threading.Thread(target=self._main, args=(stop,), name=f"node-{self.cfg.name}", daemon=True).start()

    def _main(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.registrar.register()
                break
            except Exception as e:
                log.warning("node %s: registration failed (%s); retrying", self.cfg.name, e)
                stop.wait(RETRY)
        threading.Thread(target=self.registrar.run, args=(stop,), name=f"lease-{self.cfg.name}",
                         daemon=True).start()
        while not stop.is_set() and self.server is None:
            try:
                self.server = KubeletServer(self.cfg.name, self.cfg.kubelet_port, self.state.pki / "kubelet.crt",
                                            self.state.pki / "kubelet.key", self.state.pki / "ca.crt", self)
                self.server.start()
                log.info("node %s: kubelet endpoint on port %d", self.cfg.name, self.cfg.kubelet_port)
            except Exception as e:
                log.warning("node %s: kubelet endpoint failed to start (%s); retrying", self.cfg.name, e)
                stop.wait(RETRY)
        self._watch(stop)

    def shutdown(self) -> None:
        if self.server is not None:
            self.server.shutdown()

    # -- pods -----------------------------------------------------------------------------
    def _pods_path(self) -> str:
        return self.ctx.client.path("v1", "pods")

    def _selector(self) -> str:
        return f"spec.nodeName={self.cfg.name}"

    def _watch(self, stop: threading.Event) -> None:
        first = True
        while not stop.is_set():
            try:
                listing = self.ctx.client.list(self._pods_path(), fieldSelector=self._selector())
                self._resync(listing.get("items") or [], adopt_orphans=first)
                first = False
                rv = listing["metadata"]["resourceVersion"]
                while not stop.is_set():
                    rv = self._watch_once(rv)
                    if rv is None:
                        break  # expired: list again
            except Exception as e:
                log.warning("node %s: pod watch failed (%s); relisting", self.cfg.name, e)
                stop.wait(RETRY)

    def _watch_once(self, rv: str) -> str | None:
        """Follow one watch request; returns the resourceVersion to resume from, None to relist."""
        for event in self.ctx.client.watch(self._pods_path(), resource_version=rv,
                                           timeout_seconds=WATCH_TIMEOUT, fieldSelector=self._selector()):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                log.info("node %s: watch error %s", self.cfg.name, obj.get("message"))
                return None
            rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
            if kind in ("ADDED", "MODIFIED"):
                self._upsert(obj)
            elif kind == "DELETED":
                self._deleted(obj)
        return rv

    def _resync(self, pods: list[dict[str, Any]], adopt_orphans: bool) -> None:
        seen = set()
        for pod in pods:
            seen.add(pod["metadata"]["uid"])
            self._upsert(pod)
        with self._lock:
            vanished = [w for uid, w in self.workers.items() if uid not in seen]
        for w in vanished:
            w.removed()
        if adopt_orphans:
            for rec in self.ctx.store.records():
                if rec.uid not in seen:
                    self._reap_orphan(rec)

    def _upsert(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            if uid in self.finished:
                return
            worker = self.workers.get(uid)
            if worker is None:
                worker = PodWorker(self.ctx, pod, self.ctx.store.load(uid), self._worker_done)
                self.workers[uid] = worker
                worker.start()
                return
        worker.update(pod)

    def _deleted(self, pod: dict[str, Any]) -> None:
        with self._lock:
            worker = self.workers.get(pod["metadata"]["uid"])
        if worker is not None:
            worker.removed()

    def _reap_orphan(self, rec: PodRecord) -> None:
        """A persisted pod the API no longer has: kill and clean up what is left of it."""
        containers = self.ctx.store.pod_dir(rec.uid) / "containers"
        names = sorted(os.listdir(containers)) if containers.is_dir() else []
        pod = {"metadata": {"uid": rec.uid, "name": rec.name, "namespace": rec.namespace},
               "spec": {"containers": [{"name": n} for n in names]}}
        worker = PodWorker(self.ctx, pod, rec, self._worker_done)
        worker.removed()
        with self._lock:
            self.workers[rec.uid] = worker
        worker.start()

    def _worker_done(self, uid: str) -> None:
        with self._lock:
            self.workers.pop(uid, None)
            self.finished.add(uid)

    # -- logs -----------------------------------------------------------------------------
    def find_log(self, namespace: str, pod: str, container: str, previous: bool) -> LogSource:
        with self._lock:
            worker = next((w for w in self.workers.values()
                           if w.record.namespace == namespace and w.record.name == pod and not w.gone), None)
        if worker is None:
            raise LogNotAvailable(404, f'pod "{pod}" in namespace "{namespace}" not found on node {self.cfg.name}')
        spec = worker.pod.get("spec") or {}
        names = [c["name"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
        if container not in names:
            raise LogNotAvailable(400, f"container {container} is not valid for pod {pod}")
        runtime, uid = self.ctx.runtime, worker.uid
        if previous:
            run = runtime.previous(uid, container)
            if run is None:
                raise LogNotAvailable(400, f'previous terminated container "{container}" in pod "{pod}" not found')
        else:
            run = runtime.latest(uid, container)
            if run is None and worker.record.terminal_phase:
                raise LogNotAvailable(
                    400, f'the logs of container "{container}" in pod "{pod}" are gone from node {self.cfg.name}')
            if run is None:
                reason = worker.waiting_reason(container)
                raise LogNotAvailable(400, f'container "{container}" in pod "{pod}" is waiting to start: {reason}')
        attempt = run.attempt
        return LogSource(run.log_path, lambda: not runtime.state(uid, container, attempt).running)


def run_agent(state: State, nodes_path: Path, images_path: Path) -> None:
    """Serve every node of ``nodes_path`` until SIGTERM/SIGINT. Pods keep running afterwards."""
    ensure_bridge()
    state.agent.mkdir(parents=True, exist_ok=True)
    cgroups = Cgroups()
    host_paths = HostPathRegistry(state.agent / "host-paths.json")
    shared_mounts = SharedMounts(state.agent / "shared-mounts.json")
    images = ImageCatalog(images_path)
    agents = [NodeAgent(state, cfg, images, cgroups, host_paths, shared_mounts) for cfg in load_nodes(nodes_path)]
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping (pods keep running)", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for agent in agents:
        agent.start(stop)
    log.info("node agent serving %s", ", ".join(a.cfg.name for a in agents))
    while not stop.wait(1.0):
        pass
    for agent in agents:
        agent.shutdown()
