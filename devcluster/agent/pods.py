"""One worker thread per pod: sandbox, volumes, containers, probes, status, deletion.

The worker is level-triggered: every sync reads the pod (as last seen by the
watch) and the container runs (from their directories) and moves the pod one
step on, so it can pick up after an agent restart at any point.
"""
from __future__ import annotations

import logging
import pwd
import socket
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from ..kube import ApiError
from ..paths import BRIDGE_IP
from .cgroups import kill_pids
from .config import ResolvedImage
from .containers import RunState
from .context import NodeContext
from .envvars import ContainerConfigError, expand_command, resolve_env
from .etcfiles import pod_hostname, write_etc_files
from .gpu import GpuUnavailable, gpu_request, visible_devices_env
from .logs import parse_rfc3339
from .mounts import PRIVATE
from .network import netns_exists, setup_pod_network, teardown_pod_network
from .probes import ProbeTarget, ProbeWorker, run_action
from .status import (ContainerView, container_status, init_complete, now_rfc3339, pod_conditions, pod_phase,
                     qos_class, with_transition_times)
from .store import PodRecord, read_json
from .volumes import (Mount, PreparedVolume, VolumeError, VolumeManager, container_mounts, prepare_targets,
                      prepare_working_dir)

log = logging.getLogger(__name__)

SYNC_PERIOD = 1.0
IDLE_SYNC_PERIOD = 30.0  # finished pods only wait for their deletion
VOLUME_REFRESH = 60.0
BACKOFF_BASE = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET_AFTER = 600.0
VOLUME_RETRY = (2.0, 30.0)  # a missing configMap or unbound claim is retried soon
DEFAULT_GRACE = 30
MIN_DELETION_GRACE = 2.0
TERMINAL = ("Succeeded", "Failed")
PROBE_KINDS = ("startup", "liveness", "readiness")
# In a strategic merge patch, this list element makes the list replace the old one
# (podIPs would otherwise merge by ip, and a new sandbox's address be added).
REPLACE_LIST = {"$patch": "replace"}


def _containers(pod: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return list((pod.get("spec") or {}).get(key) or [])


def _field_path(container: dict[str, Any], init: bool) -> str:
    return f"spec.{'initContainers' if init else 'containers'}{{{container['name']}}}"


def _is_sidecar(container: dict[str, Any]) -> bool:
    return container.get("restartPolicy") == "Always"


def crash_backoff(attempt: int, ran_for: float) -> float:
    """Delay before restarting a container whose run ``attempt`` ended.

    The first restart is immediate, then 10 s, 20 s, 40 s ... capped at 5 min;
    a run that lasted 10 min resets the back-off.
    """
    if attempt == 0 or ran_for >= BACKOFF_RESET_AFTER:
        return 0.0
    return min(BACKOFF_BASE * 2 ** (attempt - 1), BACKOFF_MAX)


class Retry:
    """Exponential back-off for steps that fail before a run exists (image, volumes)."""

    def __init__(self, base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self.next_at = 0.0

    def due(self) -> bool:
        return time.monotonic() >= self.next_at

    def failed(self) -> None:
        self.failures += 1
        self.next_at = time.monotonic() + min(self.base * 2 ** (self.failures - 1), self.cap)


class PodWorker:
    """Runs one pod of one node until the pod object is gone."""

    def __init__(self, ctx: NodeContext, pod: dict[str, Any], record: PodRecord | None,
                 on_done: Callable[[str], None]):
        self.ctx = ctx
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.on_done = on_done
        self.gone = False
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self.pod_dir = ctx.store.pod_dir(self.uid)
        meta = pod["metadata"]
        self.record = record or PodRecord(
            uid=self.uid, namespace=meta["namespace"], name=meta["name"],
            start_time=(pod.get("status") or {}).get("startTime") or now_rfc3339(),
            host_network=bool((pod.get("spec") or {}).get("hostNetwork")))
        self.volume_manager = VolumeManager(ctx.client, ctx.objects, self.pod_dir, BRIDGE_IP,
                                            ctx.config.capacity, ctx.local_paths)
        self.volumes: dict[str, PreparedVolume] | None = None
        self.volumes_at = 0.0
        self.volume_retry = Retry(*VOLUME_RETRY)
        self.waiting: dict[str, tuple[str, str]] = {}
        self.retries: dict[str, Retry] = {}
        self.probes: dict[tuple[str, int], dict[str, ProbeWorker]] = {}
        self.kill_deadlines: dict[tuple[str, int], float] = {}
        self.last_status: dict[str, Any] | None = None
        self.last_conditions: list[dict[str, Any]] | None = None
        self.sync_error: str | None = None
        self.adopted_status = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses") or []}
        self.adopted_status.update(
            {s["name"]: s for s in (pod.get("status") or {}).get("initContainerStatuses") or []})
        self.thread = threading.Thread(target=self._loop, daemon=True,
                                       name=f"pod-{meta['namespace']}/{meta['name']}")

    # -- inputs ------------------------------------------------------------------------
    @property
    def key(self) -> str:
        return f"{self.record.namespace}/{self.record.name}"

    def start(self) -> None:
        self.thread.start()

    def update(self, pod: dict[str, Any]) -> None:
        """A newer version of the pod from the watch."""
        with self._lock:
            self.pod = pod
        self.wake.set()

    def removed(self) -> None:
        """The pod object is gone from the API."""
        self.gone = True
        self.wake.set()

    # -- loop ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            try:
                if self.sync():
                    break
                if self.sync_error:
                    self.sync_error = None
            except Exception as e:  # a pod's failure never takes the agent down
                message = f"{type(e).__name__}: {e}"
                if message != self.sync_error:
                    log.exception("pod %s: sync failed", self.key)
                self.sync_error = message
                try:
                    self._patch_status()
                except Exception:
                    log.debug("pod %s: status patch after failure failed", self.key, exc_info=True)
            idle = self.record.terminal_phase is not None and self.record.torn_down and not self.sync_error
            self.wake.wait(IDLE_SYNC_PERIOD if idle else SYNC_PERIOD)
            self.wake.clear()
        self._stop_all_probes()
        self.on_done(self.uid)

    def sync(self) -> bool:
        """One step; returns True when the worker is finished."""
        with self._lock:
            pod = self.pod
        if self.gone:
            self._kill_everything()
            self._teardown()
            self.ctx.store.remove(self.uid)
            log.info("pod %s: removed from the API; cleaned up", self.key)
            return True
        if pod["metadata"].get("deletionTimestamp"):
            return self._delete(pod)
        api_phase = (pod.get("status") or {}).get("phase")
        if self.record.terminal_phase is None and api_phase in TERMINAL:
            # Finished before (e.g. in an earlier life of the agent): never run it again.
            self.record.terminal_phase = api_phase
            self.ctx.store.save(self.record)
        if self.record.terminal_phase is None and self._deadline_exceeded(pod):
            self.record.terminal_phase, self.record.terminal_reason = "Failed", "DeadlineExceeded"
            self.record.terminal_message = "Pod was active on the node longer than the specified deadline"
            self.ctx.store.save(self.record)
            self.ctx.events.emit(pod, "Normal", "DeadlineExceeded", self.record.terminal_message)
        if self.record.terminal_phase:
            self._finish_terminal()
            self._patch_status()
            return False
        if not self._ensure_sandbox(pod):
            self._patch_status()
            return False
        if not self._ensure_volumes(pod):
            self._patch_status()
            return False
        if not self.record.initialized:
            if self._sync_init_containers(pod):
                self.record.initialized = True
                self.ctx.store.save(self.record)
        if self.record.initialized:
            self._sync_sidecars(pod)
            self._sync_app_containers(pod)
        init_views, app_views = self._views(pod)
        phase = pod_phase(self._restart_policy(pod), init_views, app_views, self.record.initialized)
        if phase in TERMINAL:
            self.record.terminal_phase = phase
            self.ctx.store.save(self.record)
            log.info("pod %s: %s", self.key, phase)
            self._finish_terminal()
        self._patch_status()
        return False

    def _deadline_exceeded(self, pod: dict[str, Any]) -> bool:
        """``spec.activeDeadlineSeconds`` has passed since the pod started on this node."""
        deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
        if deadline is None:
            return False
        try:
            return time.time() - parse_rfc3339(self.record.start_time) > int(deadline)
        except ValueError:
            return False

    @staticmethod
    def _restart_policy(pod: dict[str, Any]) -> str:
        return (pod.get("spec") or {}).get("restartPolicy") or "Always"

    # -- sandbox -------------------------------------------------------------------------
    def _ensure_sandbox(self, pod: dict[str, Any]) -> bool:
        rec = self.record
        if rec.sandbox_ready and not rec.host_network and not netns_exists(rec.netns or ""):
            log.warning("pod %s: network namespace %s vanished; recreating the sandbox", self.key, rec.netns)
            self._kill_everything()
            rec.sandbox_ready = False
            rec.initialized = False
            self.ctx.store.save(rec)
        if rec.sandbox_ready:
            return True
        with self.ctx.alloc_lock:
            try:
                rec.gpus = self.ctx.gpus.allocate(self.uid, gpu_request(pod))
            except GpuUnavailable as e:
                rec.terminal_phase, rec.terminal_reason = "Failed", "UnexpectedAdmissionError"
                rec.terminal_message = str(e)
                self.ctx.store.save(rec)
                self.ctx.events.emit(pod, "Warning", "UnexpectedAdmissionError", str(e))
                return False
            if not rec.host_network:
                rec.ip = self.ctx.ips.allocate(self.uid)
            self.ctx.store.save(rec)
        try:
            if rec.host_network:
                rec.ip = BRIDGE_IP
            else:
                rec.netns, rec.veth = setup_pod_network(self.uid, rec.ip or "")
            write_etc_files(pod, rec.ip, self.pod_dir / "etc")
        except Exception as e:
            self.ctx.events.emit(pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}")
            raise
        rec.sandbox_ready = True
        rec.sandbox_at = time.time()
        rec.torn_down = False
        self.ctx.store.save(rec)
        log.info("pod %s: sandbox ready (ip %s%s)", self.key, rec.ip,
                 f", gpus {rec.gpus}" if rec.gpus else "")
        return True

    def _ensure_volumes(self, pod: dict[str, Any]) -> bool:
        fresh = self.volumes is not None and time.monotonic() - self.volumes_at < VOLUME_REFRESH
        if fresh:
            return True
        if self.volumes is None and not self.volume_retry.due():
            return False
        try:
            self.volumes = self.volume_manager.prepare(pod, self.record.ip)
            self.volumes_at = time.monotonic()
            self.volume_retry = Retry(*VOLUME_RETRY)
            return True
        except VolumeError as e:
            self.volume_retry.failed()
            self.ctx.events.emit(pod, "Warning", "FailedMount", str(e))
            if self.volumes is not None:  # a failed refresh keeps the running containers going
                self.volumes_at = time.monotonic()
                return True
            for c in _containers(pod, "initContainers") + _containers(pod, "containers"):
                self.waiting[c["name"]] = ("ContainerCreating", "")
            return False

    # -- containers ------------------------------------------------------------------------
    def _sync_init_containers(self, pod: dict[str, Any]) -> bool:
        """Run init containers in order; True once all are done (sidecars: started)."""
        policy = self._restart_policy(pod)
        for c in _containers(pod, "initContainers"):
            run = self._current_run(c["name"])
            if run is None:
                self._start(pod, c, 0, init=True)
                return False
            if run.running:
                self._check_probes(pod, c, run, init=True)
                if _is_sidecar(c) and self._started(c, run):
                    continue
                return False
            assert run.exit is not None
            if not _is_sidecar(c) and run.exit.exit_code == 0:
                if self._before_sandbox(run):  # a new sandbox runs its init containers again
                    self._start(pod, c, run.attempt + 1, init=True)
                    return False
                continue
            if policy == "Never" and not _is_sidecar(c):
                return False
            self._restart_after_backoff(pod, c, run, init=True)
            return False
        for c in _containers(pod, "containers"):
            self.waiting.pop(c["name"], None)
        return True

    def _sync_sidecars(self, pod: dict[str, Any]) -> None:
        for c in _containers(pod, "initContainers"):
            if not _is_sidecar(c):
                continue
            run = self._current_run(c["name"])
            if run is None:
                self._start(pod, c, 0, init=True)
            elif run.running:
                self._check_probes(pod, c, run, init=True)
            else:
                self._restart_after_backoff(pod, c, run, init=True)

    def _sync_app_containers(self, pod: dict[str, Any]) -> None:
        policy = self._restart_policy(pod)
        for c in _containers(pod, "containers"):
            run = self._current_run(c["name"])
            if run is None:
                self._start(pod, c, 0, init=False)
                continue
            if run.running:
                self._check_probes(pod, c, run, init=False)
                continue
            assert run.exit is not None
            if policy == "Always" or (policy == "OnFailure" and run.exit.exit_code != 0):
                self._restart_after_backoff(pod, c, run, init=False)
            else:
                self.waiting.pop(c["name"], None)

    def _current_run(self, name: str) -> RunState | None:
        """The latest run; a run whose shim vanished is closed (killed) first."""
        run = self.ctx.runtime.latest(self.uid, name)
        if run is not None and run.lost:
            log.warning("pod %s: container %s lost its shim; marking it exited", self.key, name)
            run = self.ctx.runtime.kill(self.uid, run)
        if run is not None and not run.running:
            self._stop_probes(name, run.attempt)
        return run

    def _before_sandbox(self, run: RunState) -> bool:
        """The run belongs to an earlier sandbox of the pod."""
        try:
            return parse_rfc3339(run.started_at or "") < self.record.sandbox_at
        except ValueError:
            return False

    def _restart_after_backoff(self, pod: dict[str, Any], c: dict[str, Any], run: RunState, init: bool) -> None:
        assert run.exit is not None
        name = c["name"]
        try:
            ran_for = parse_rfc3339(run.exit.finished_at) - parse_rfc3339(run.exit.started_at or run.exit.finished_at)
            ready_at = parse_rfc3339(run.exit.finished_at) + crash_backoff(run.attempt, ran_for)
        except ValueError:
            ready_at = 0.0
        delay = ready_at - time.time()
        if delay > 0:
            meta = pod["metadata"]
            wait_s = int(crash_backoff(run.attempt, 0))
            message = (f"back-off {wait_s}s restarting failed container={name} "
                       f"pod={meta['name']}_{meta['namespace']}({self.uid})")
            if self.waiting.get(name, ("",))[0] != "CrashLoopBackOff":
                self.ctx.events.emit(pod, "Warning", "BackOff",
                                     f"Back-off restarting failed container {name} in pod "
                                     f"{meta['name']}_{meta['namespace']}({self.uid})", _field_path(c, init))
            self.waiting[name] = ("CrashLoopBackOff", message)
            return
        self._start(pod, c, run.attempt + 1, init)

    def _start(self, pod: dict[str, Any], c: dict[str, Any], attempt: int, init: bool) -> None:
        """Start run ``attempt`` of container ``c``, or record why it waits."""
        name = c["name"]
        retry = self.retries.setdefault(name, Retry())
        if not retry.due():
            return
        field_path = _field_path(c, init)
        image = self.ctx.images.resolve(c.get("image") or "")
        if image is None:
            ref = c.get("image")
            message = f'image "{ref}" is not mapped to a local environment: add a rule to {self.ctx.images.path}'
            if retry.failures == 0:
                self.waiting[name] = ("ErrImagePull", message)
            else:
                self.waiting[name] = ("ImagePullBackOff", f'Back-off pulling image "{ref}": {message}')
                self.ctx.events.emit(pod, "Normal", "BackOff", f'Back-off pulling image "{ref}"', field_path)
            self.ctx.events.emit(pod, "Warning", "Failed", f'Failed to pull image "{ref}": {message}', field_path)
            retry.failed()
            return
        try:
            spec = self._shim_spec(pod, c, image, attempt)
        except ContainerConfigError as e:
            self.waiting[name] = ("CreateContainerConfigError", str(e))
            self.ctx.events.emit(pod, "Warning", "Failed", f"Error: {e}", field_path)
            retry.next_at = time.monotonic() + 2.0
            return
        except (VolumeError, _RunError) as e:
            reason = "RunContainerError" if isinstance(e, _RunError) else "CreateContainerError"
            self.waiting[name] = (reason, str(e))
            self.ctx.events.emit(pod, "Warning", "Failed", f"Error: {e}", field_path)
            retry.failed()
            return
        except ApiError as e:
            self.waiting[name] = ("CreateContainerConfigError", str(e))
            retry.next_at = time.monotonic() + 2.0
            return
        self.ctx.events.emit(pod, "Normal", "Pulled",
                             f'Container image "{c.get("image")}" already present on machine', field_path)
        run = self.ctx.runtime.start(self.uid, name, attempt, spec)
        self.retries.pop(name, None)
        self.waiting.pop(name, None)
        self.ctx.events.emit(pod, "Normal", "Created", f"Created container: {name}", field_path)
        self.ctx.events.emit(pod, "Normal", "Started", f"Started container {name}", field_path)
        log.info("pod %s: started container %s (attempt %d)", self.key, name, attempt)
        self._start_probes(pod, c, run, init)
        post_start = (c.get("lifecycle") or {}).get("postStart")
        if post_start:
            self._run_post_start(pod, c, run, post_start, field_path)

    def _shim_spec(self, pod: dict[str, Any], c: dict[str, Any], image: ResolvedImage,
                   attempt: int) -> dict[str, Any]:
        """Everything the shim needs to run container ``c``."""
        rec = self.record
        command = list(c.get("command") or image.command or [])
        if not command:
            raise _RunError(
                f'container "{c["name"]}" has no command, and devcluster runs images as local environments '
                f'with no entrypoint: set command in the pod spec, or a default command for image '
                f'"{c.get("image")}" in {self.ctx.images.path}')
        uid, gid, groups = _run_as(pod, c)
        env = image.base_env()
        env.setdefault("HOME", _home(uid))
        env["HOSTNAME"] = socket.gethostname() if rec.host_network else pod_hostname(pod)
        env.update(resolve_env(pod, c, self.ctx.objects, rec.ip, BRIDGE_IP, self.ctx.config.capacity))
        env.update(visible_devices_env(rec.gpus))
        argv = expand_command(command, env) + expand_command(list(c.get("args") or []), env)
        etc = {t: str(self.pod_dir / "etc" / Path(t).name) for t in ("/etc/resolv.conf", "/etc/hosts", "/etc/hostname")
               if (self.pod_dir / "etc" / Path(t).name).exists()}
        mounts = container_mounts(c, self.volumes or {}, env, etc)
        term_target = c.get("terminationMessagePath") or "/dev/termination-log"
        term_source = str(self.ctx.runtime.run_dir(self.uid, c["name"], attempt) / "termination-log")
        if all(m.target != term_target for m in mounts):
            mounts.append(Mount(source=term_source, target=term_target, read_only=False, is_file=True))
        prepare_targets(mounts, self.ctx.host_paths, self.uid)
        for m in mounts:
            if m.propagation != PRIVATE:
                # The node root as a whole, like a node whose / is shared; else the source itself.
                point = str(self.ctx.local_paths.root) if self.ctx.local_paths.contains(m.source) else m.source
                try:
                    self.ctx.shared_mounts.ensure(m.source, m.propagation, point)
                except OSError as e:
                    raise VolumeError(f"cannot make {point} a shared mount for {m.target}: {e}") from e
        if c.get("workingDir"):
            prepare_working_dir(c["workingDir"], mounts, self.ctx.host_paths, self.uid)
        cgroup_dirs = self.ctx.cgroups.create(self.uid, c["name"], c)
        return {
            "netns": None if rec.host_network else rec.netns,
            "hostname": None if rec.host_network else pod_hostname(pod),
            "mounts": [asdict(m) for m in mounts],
            "argv": argv,
            "env": env,
            "cwd": c.get("workingDir") or None,
            "cgroups": [str(d) for d in cgroup_dirs.values()],
            "uid": uid, "gid": gid, "groups": groups,
            "fallback_to_logs": c.get("terminationMessagePolicy") == "FallbackToLogsOnError",
        }

    def _run_post_start(self, pod: dict[str, Any], c: dict[str, Any], run: RunState,
                        handler: dict[str, Any], field_path: str) -> None:
        target = self._probe_target(c, run)
        if target is None:
            return
        ok, message = run_action(handler, target, float(self._grace(pod)))
        if not ok:
            self.ctx.events.emit(pod, "Warning", "FailedPostStartHook", f"PostStartHook failed: {message}", field_path)
            self.ctx.events.emit(pod, "Normal", "Killing",
                                 f"FailedPostStartHook: container {c['name']} will be restarted", field_path)
            self.ctx.runtime.stop(self.uid, run, float(self._grace(pod)))

    # -- probes ----------------------------------------------------------------------------
    def _probe_target(self, c: dict[str, Any], run: RunState) -> ProbeTarget | None:
        state = self.ctx.runtime.state(self.uid, c["name"], run.attempt)
        if not state.running or state.shim_pid is None or state.started_at is None:
            return None  # run.json (started_at) appears once the shim set up the namespaces
        spec = self._read_spec(c["name"], run.attempt)
        ports = {p["name"]: int(p["containerPort"]) for p in c.get("ports") or [] if p.get("name")}
        return ProbeTarget(pod_ip=self.record.ip or BRIDGE_IP, ports=ports, shim_pid=state.shim_pid,
                           env=spec.get("env") or {}, cwd=spec.get("cwd"))

    def _read_spec(self, name: str, attempt: int) -> dict[str, Any]:
        return read_json(self.ctx.runtime.run_dir(self.uid, name, attempt) / "spec.json") or {}

    def _start_probes(self, pod: dict[str, Any], c: dict[str, Any], run: RunState, init: bool) -> None:
        """Probe workers for a run (after an agent restart, seeded from the pod's last status)."""
        if init and not _is_sidecar(c):
            return
        key = (c["name"], run.attempt)
        if key in self.probes:
            return
        adopted = self.adopted_status.get(c["name"]) or {}
        same_run = adopted.get("restartCount") == run.attempt and "running" in (adopted.get("state") or {})
        try:
            started_at = parse_rfc3339(run.started_at) if run.started_at else time.time()
        except ValueError:
            started_at = time.time()
        workers: dict[str, ProbeWorker] = {}
        field_path = _field_path(c, init)

        def on_result(kind: str, ok: bool, message: str, changed: bool) -> None:
            if not ok:
                self.ctx.events.emit(self.pod, "Warning", "Unhealthy",
                                     f"{kind.capitalize()} probe failed: {message}", field_path)
            if changed:
                self.wake.set()

        def startup_done() -> bool:
            w = workers.get("startup")
            return w is None or w.result

        def target() -> ProbeTarget | None:
            return self._probe_target(c, run)

        for kind in PROBE_KINDS:
            probe = c.get(f"{kind}Probe")
            if not probe:
                continue
            initial = {"liveness": True, "readiness": False, "startup": False}[kind]
            if same_run:
                if kind == "readiness":
                    initial = bool(adopted.get("ready"))
                if kind == "startup":
                    initial = bool(adopted.get("started"))
            worker = ProbeWorker(kind, probe, target, started_at, on_result,
                                 (lambda: True) if kind == "startup" else startup_done, initial)
            workers[kind] = worker
        self.probes[key] = workers
        for w in workers.values():
            if w.kind == "startup" and w.result:
                continue
            w.start()

    def _check_probes(self, pod: dict[str, Any], c: dict[str, Any], run: RunState, init: bool) -> None:
        """Start probe workers for adopted runs; restart a container failing liveness/startup."""
        key = (c["name"], run.attempt)
        if key not in self.probes:
            self._start_probes(pod, c, run, init)
        workers = self.probes.get(key) or {}
        deadline = self.kill_deadlines.get(key)
        if deadline is not None:
            if time.monotonic() >= deadline:
                self.ctx.runtime.kill(self.uid, run)
            return
        for kind in ("liveness", "startup"):
            w = workers.get(kind)
            if w is not None and w.failed:
                field_path = _field_path(c, init)
                self.ctx.events.emit(pod, "Normal", "Killing",
                                     f"Container {c['name']} failed {kind} probe, will be restarted", field_path)
                grace = float(self._grace(pod))
                self.kill_deadlines[key] = time.monotonic() + grace
                self.ctx.runtime.terminate(run)
                return

    def _started(self, c: dict[str, Any], run: RunState) -> bool:
        if not run.running:
            return False
        w = (self.probes.get((c["name"], run.attempt)) or {}).get("startup")
        return w is None or w.result

    def _ready(self, c: dict[str, Any], run: RunState) -> bool:
        if not self._started(c, run):
            return False
        w = (self.probes.get((c["name"], run.attempt)) or {}).get("readiness")
        return w is None or w.result

    def _stop_probes(self, name: str, attempt: int) -> None:
        for w in (self.probes.pop((name, attempt), None) or {}).values():
            w.stop()
        self.kill_deadlines.pop((name, attempt), None)

    def _stop_all_probes(self) -> None:
        for key in list(self.probes):
            self._stop_probes(*key)

    # -- status ----------------------------------------------------------------------------
    def _views(self, pod: dict[str, Any]) -> tuple[list[ContainerView], list[ContainerView]]:
        def view(c: dict[str, Any], init: bool) -> ContainerView:
            name = c["name"]
            run = self.ctx.runtime.latest(self.uid, name)
            prev = self.ctx.runtime.previous(self.uid, name)
            image = self.ctx.images.resolve(c.get("image") or "")
            waiting = self.waiting.get(name)
            if run is not None and run.running:
                waiting = None
            elif waiting is None and run is None:
                creating = not self.record.sandbox_ready or self.volumes is None
                waiting = ("ContainerCreating", "") if creating else ("PodInitializing", "")
            ready = started = False
            if run is not None and run.running:
                started = self._started(c, run)
                ready = self._ready(c, run)
            elif init and not _is_sidecar(c) and run is not None and run.exit is not None:
                ready = run.exit.exit_code == 0
            return ContainerView(
                name=name, image=c.get("image") or "", image_id=image.image_id if image else "",
                run=run, previous_exit=prev.exit if prev else None, waiting=waiting,
                ready=ready, started=started, sidecar=init and _is_sidecar(c))

        return ([view(c, True) for c in _containers(pod, "initContainers")],
                [view(c, False) for c in _containers(pod, "containers")])

    def _build_status(self, pod: dict[str, Any]) -> dict[str, Any]:
        rec = self.record
        init_views, app_views = self._views(pod)
        if rec.terminal_phase:
            phase = rec.terminal_phase
        else:
            phase = pod_phase(self._restart_policy(pod), init_views, app_views, rec.initialized)
            if phase in TERMINAL:  # only sync() declares a pod finished, together with its teardown
                phase = (pod.get("status") or {}).get("phase") or "Pending"
        initialized = rec.initialized or init_complete(init_views)
        conditions = pod_conditions(pod, phase, rec.sandbox_ready and not rec.torn_down, initialized,
                                    init_views, app_views)
        existing = self.last_conditions if self.last_conditions is not None else \
            (pod.get("status") or {}).get("conditions") or []
        conditions = with_transition_times(conditions, existing)
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": BRIDGE_IP,
            "hostIPs": [{"ip": BRIDGE_IP}, REPLACE_LIST],
            "startTime": rec.start_time,
            "qosClass": (pod.get("status") or {}).get("qosClass") or qos_class(pod),
            "containerStatuses": [container_status(v) for v in app_views],
        }
        if init_views:
            status["initContainerStatuses"] = [container_status(v) for v in init_views]
        if rec.ip:
            status["podIP"] = rec.ip
            status["podIPs"] = [{"ip": rec.ip}, REPLACE_LIST]
        if self.sync_error:
            status["reason"], status["message"] = "NodeAgentError", f"devcluster node agent: {self.sync_error}"
        elif rec.terminal_reason:
            status["reason"], status["message"] = rec.terminal_reason, rec.terminal_message
        else:
            status["reason"] = status["message"] = None
        return status

    def waiting_reason(self, container: str) -> str:
        """Why ``container`` has not started, as its last reported status says."""
        status = self.last_status or {}
        for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            if s["name"] == container and (s["state"] or {}).get("waiting"):
                return str(s["state"]["waiting"].get("reason") or "ContainerCreating")
        return "ContainerCreating"

    def _patch_status(self) -> None:
        """Send the pod's status if it changed; a status the API already has as final stays."""
        with self._lock:
            pod = self.pod
        if (pod.get("status") or {}).get("phase") in TERMINAL:
            return
        status = self._build_status(pod)
        if status == self.last_status:
            return
        try:
            self.ctx.client.patch(
                self.ctx.client.path("v1", "pods", self.record.namespace, self.record.name, "status"),
                {"metadata": {"uid": self.uid}, "status": status}, kind="strategic")
        except ApiError as e:
            if e.status == 404:
                self.gone = True
                return
            raise
        self.last_status = status
        self.last_conditions = status["conditions"]

    # -- stopping ----------------------------------------------------------------------------
    def _grace(self, pod: dict[str, Any]) -> int:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        value = meta.get("deletionGracePeriodSeconds")
        if value is None:
            value = spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE)
        return max(0, int(value))

    def _deletion_grace(self, pod: dict[str, Any]) -> float:
        """What is left of the grace period: deletionTimestamp is when it ends (an agent
        restart during a deletion does not start the period over)."""
        grace = float(self._grace(pod))
        try:
            left = parse_rfc3339(pod["metadata"]["deletionTimestamp"]) - time.time()
        except (KeyError, ValueError):
            return grace
        return min(grace, max(MIN_DELETION_GRACE, left)) if grace > 0 else 0.0

    def _running_runs(self, pod: dict[str, Any]) -> list[tuple[dict[str, Any], bool, RunState]]:
        out = []
        for init, key in ((True, "initContainers"), (False, "containers")):
            for c in _containers(pod, key):
                run = self.ctx.runtime.latest(self.uid, c["name"])
                if run is not None and (run.running or run.lost):
                    out.append((c, init, run))
        return out

    def _stop_containers(self, pod: dict[str, Any], grace: float) -> None:
        """preStop hooks, SIGTERM, ``grace`` seconds, SIGKILL - all containers in parallel."""
        deadline = time.monotonic() + grace

        def stop_one(c: dict[str, Any], init: bool, run: RunState) -> None:
            field_path = _field_path(c, init)
            self.ctx.events.emit(pod, "Normal", "Killing", f"Stopping container {c['name']}", field_path)
            pre_stop = (c.get("lifecycle") or {}).get("preStop")
            if pre_stop and run.running:
                target = self._probe_target(c, run)
                if target is not None:
                    ok, message = run_action(pre_stop, target, max(1.0, deadline - time.monotonic()))
                    if not ok:
                        self.ctx.events.emit(pod, "Warning", "FailedPreStopHook",
                                             f"PreStopHook failed: {message}", field_path)
            self.ctx.runtime.stop(self.uid, run, max(0.0, deadline - time.monotonic()))

        threads = [threading.Thread(target=stop_one, args=args, daemon=True) for args in self._running_runs(pod)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _kill_everything(self) -> None:
        with self._lock:
            pod = self.pod
        for _c, _init, run in self._running_runs(pod):
            self.ctx.runtime.kill(self.uid, run)
        self._stop_all_probes()

    def _finish_terminal(self) -> None:
        """A finished pod: nothing may keep running; its sandbox goes, its logs stay."""
        if self.record.torn_down:
            return
        with self._lock:
            pod = self.pod
        self._stop_containers(pod, float(self._grace(pod)))
        self._teardown()

    def _teardown(self) -> None:
        """Free everything of the sandbox: processes, network, cgroups, mount targets, IP, GPUs."""
        rec = self.record
        kill_pids(self.ctx.cgroups.pod_pids(self.uid))
        self._stop_all_probes()
        if not rec.host_network:
            teardown_pod_network(rec.netns, rec.veth)
        self.ctx.cgroups.remove_pod(self.uid)
        self.ctx.shared_mounts.release_under(str(self.pod_dir))
        self.ctx.host_paths.release(self.uid)
        with self.ctx.alloc_lock:
            self.ctx.ips.release(self.uid)
            self.ctx.gpus.release(self.uid)
        rec.torn_down = True
        rec.sandbox_ready = False
        if self.pod_dir.exists():
            self.ctx.store.save(rec)

    def _delete(self, pod: dict[str, Any]) -> bool:
        """Graceful deletion: stop, final status, tear down, then remove the object."""
        if not self.record.torn_down:
            grace = self._deletion_grace(pod)
            log.info("pod %s: deleting (grace %ss)", self.key, int(grace))
            self._stop_containers(pod, grace)
            if self.record.terminal_phase is None:
                init_views, app_views = self._views(pod)
                phase = pod_phase(self._restart_policy(pod), init_views, app_views, self.record.initialized,
                                  deleting=True)
                self.record.terminal_phase = phase if phase in TERMINAL else "Failed"
                self.ctx.store.save(self.record)
            self._teardown()
        try:
            self._patch_status()
        except ApiError as e:
            log.info("pod %s: final status not written: %s", self.key, e)
        if not self.gone:
            body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                    "preconditions": {"uid": self.uid}}
            try:
                self.ctx.client.delete(self.ctx.client.path("v1", "pods", self.record.namespace, self.record.name),
                                       body)
            except ApiError as e:
                if e.status != 409:  # 409: the name now belongs to another pod; ours is gone
                    raise
        self.ctx.store.remove(self.uid)
        log.info("pod %s: deleted", self.key)
        return True


class _RunError(Exception):
    """The container cannot be run as specified (RunContainerError)."""


def _run_as(pod: dict[str, Any], c: dict[str, Any]) -> tuple[int | None, int | None, list[int]]:
    """(uid, gid, supplementary groups) from the pod's and container's securityContext."""
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    csc = c.get("securityContext") or {}
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    groups = [int(g) for g in psc.get("supplementalGroups") or []]
    if psc.get("fsGroup") is not None:
        groups.append(int(psc["fsGroup"]))
    if uid is None and gid is None and not groups:
        return None, None, []
    if gid is None:
        gid = 0
    return (None if uid is None else int(uid)), int(gid), sorted(set(groups))


def _home(uid: int | None) -> str:
    if uid is None or uid == 0:
        return "/root"
    try:
        return pwd.getpwuid(uid).pw_dir
    except KeyError:
        return "/"

