"""Scheduled notebooks: each one a CronJob in the user's namespace.

The CronJob is the record. Runs are its Jobs; a run's outputs (executed
notebook, HTML, ``run.json``) are written by the runner into
``~/.kubelab/runs/<schedule>/<timestamp>/`` in the user's home.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Mapping

from traitlets import Enum, Instance, Int, Unicode
from traitlets.config import LoggingConfigurable

from kubelab.core import cron
from kubelab.core import workloads as W
from kubelab.core.names import is_dns_label

from .. import runner
from .errors import BadRequest, Conflict, NotFound, ServiceError
from .workspace import Workspace, event_view

CRONJOB = ("batch/v1", "CronJob")
JOB = ("batch/v1", "Job")


class ScheduleService(LoggingConfigurable):
    """Create, change, run and inspect scheduled notebooks."""

    workspace = Instance(Workspace)

    default_timezone = Unicode(
        "UTC",
        config=True,
        help="""
        Time zone of schedules created without one (an IANA name).

        Example::

            c.ScheduleService.default_timezone = "Europe/Berlin"
        """,
    )
    concurrency_policy = Enum(
        list(W.CONCURRENCY_POLICIES), "Forbid",
        config=True,
        help="""
        What a schedule does when its previous run is still going: ``Forbid``
        skips the new run (the default), ``Allow`` runs both, ``Replace``
        stops the old run. Users may choose per schedule.

        Example::

            c.ScheduleService.concurrency_policy = "Replace"
        """,
    )
    starting_deadline_seconds = Int(
        300,
        config=True,
        help="""
        A run that could not start within this many seconds of its time
        (e.g. the controller was down) is skipped rather than run late.

        Example::

            c.ScheduleService.starting_deadline_seconds = 600
        """,
    )
    default_timeout_seconds = Int(
        3600,
        config=True,
        help="""
        Run timeout when a schedule gives none (the Job's activeDeadlineSeconds).

        Example::

            c.ScheduleService.default_timeout_seconds = 7200
        """,
    )
    max_timeout_seconds = Int(
        86400,
        config=True,
        help="""
        The longest run timeout a user may ask for.

        Example::

            c.ScheduleService.max_timeout_seconds = 3 * 86400
        """,
    )
    max_retries = Int(
        5,
        config=True,
        help="""
        The most retries (Job backoffLimit) a user may ask for; the default is 0.

        Example::

            c.ScheduleService.max_retries = 2
        """,
    )
    successful_history = Int(
        5,
        config=True,
        help="""
        Finished successful runs kept as Jobs (their outputs stay in the home regardless).

        Example::

            c.ScheduleService.successful_history = 10
        """,
    )
    failed_history = Int(
        5,
        config=True,
        help="""
        Failed runs kept as Jobs, for their logs and events.

        Example::

            c.ScheduleService.failed_history = 10
        """,
    )
    default_kernel = Unicode(
        "python3",
        config=True,
        help="""
        Kernel that runs scheduled notebooks when a schedule names none.

        Example::

            c.ScheduleService.default_kernel = "python3"
        """,
    )
    @property
    def defaults(self) -> W.ScheduleDefaults:
        return W.ScheduleDefaults(
            timezone=self.default_timezone, concurrency_policy=self.concurrency_policy,
            starting_deadline_seconds=self.starting_deadline_seconds, timeout_seconds=self.default_timeout_seconds,
            max_timeout_seconds=self.max_timeout_seconds, successful_history=self.successful_history,
            failed_history=self.failed_history, max_retries=self.max_retries, kernel=self.default_kernel)

    @property
    def ws(self) -> Workspace:
        return self.workspace

    # -- validation -------------------------------------------------------------------------------
    def _parse(self, req: Mapping[str, Any]) -> W.ScheduleSpec:
        try:
            return W.parse_schedule(req, self.ws.settings, self.defaults)
        except W.WorkloadError as e:
            raise BadRequest(str(e)) from None
        except PermissionError as e:
            raise ServiceError(str(e), 403) from None

    def preview(self, schedule: Any, tz: Any = None, n: int = 5) -> dict[str, Any]:
        """Check a cron expression and time zone; the next ``n`` times in UTC and local."""
        tz = tz or self.default_timezone
        if not isinstance(schedule, str) or not isinstance(tz, str):
            raise BadRequest("schedule and timezone must be strings")
        try:
            times = cron.next_runs(schedule, cron.validate_timezone(tz), n)
        except cron.CronError as e:
            raise BadRequest(str(e)) from None
        return {"schedule": schedule, "timezone": tz,
                "next_runs": [t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") for t in times],
                "next_runs_local": [t.isoformat() for t in times]}

    # -- CRUD -------------------------------------------------------------------------------------
    def _get(self, name: str) -> dict:
        return self.ws.require(*CRONJOB, name, (W.SCHEDULE_LABEL, name), "schedule")

    def _view(self, cj: dict) -> dict:
        view = W.schedule_view(cj)
        view["snapshot"] = W.spec_of(cj).get("notebook") and \
            f"{W.STATE_DIR}/schedules/{view['name']}/" + view["notebook"].rsplit("/", 1)[-1]
        return view

    def list(self) -> list[dict]:
        cjs = self.ws.call(self.ws.kube.items, *CRONJOB, label_selector=f"{W.SCHEDULE_LABEL}")
        return [self._view(cj) for cj in sorted(cjs, key=lambda c: c["metadata"]["name"])]

    def get(self, name: str) -> dict:
        return self._view(self._get(name))

    def create(self, req: Mapping[str, Any]) -> dict:
        spec = self._parse(req)
        self.ws.require_file(spec.notebook, "notebook")
        if self.ws.call(self.ws.kube.get, *CRONJOB, spec.name) is not None:
            raise Conflict(f"a schedule named {spec.name!r} already exists")
        self._snapshot(spec)
        try:
            cj = self.ws.call(self.ws.kube.create, self._cronjob(spec), what=f"schedule {spec.name}")
        except ServiceError:
            self.ws.remove_in_home(f"{W.STATE_DIR}/schedules/{spec.name}")
            raise
        return self._view(cj)

    def update(self, name: str, changes: Mapping[str, Any]) -> dict:
        if not isinstance(changes, Mapping):
            raise BadRequest("the request body must be a JSON object")
        if "name" in changes and changes["name"] != name:
            raise BadRequest("a schedule cannot be renamed; create a new one")
        cj = self._get(name)
        merged = {**W.spec_of(cj), **changes, "name": name}
        spec = self._parse(merged)
        if "notebook" in changes:
            self.ws.require_file(spec.notebook, "notebook")
            self._snapshot(spec)
        cj_new = self._cronjob(spec)
        cj_new["metadata"]["resourceVersion"] = cj["metadata"]["resourceVersion"]
        return self._view(self.ws.call(self.ws.kube.apply, cj_new, what=f"schedule {name}"))

    def set_suspended(self, name: str, suspend: bool) -> dict:
        return self.update(name, {"suspend": suspend})

    def delete(self, name: str) -> None:
        self._get(name)
        self.ws.call(self.ws.kube.delete, *CRONJOB, name, propagation="Background")
        self.ws.remove_in_home(f"{W.STATE_DIR}/schedules/{name}")

    def _snapshot(self, spec: W.ScheduleSpec) -> None:
        """Runs execute a copy taken now, so later edits do not change what runs."""
        self.ws.copy_in_home(spec.notebook, spec.snapshot)

    def _cronjob(self, spec: W.ScheduleSpec) -> dict:
        return W.schedule_cronjob(self.ws.settings, spec, self.defaults)

    # -- runs -------------------------------------------------------------------------------------
    def run_now(self, name: str, parameters: Mapping[str, Any] | None = None, trigger: str = "manual") -> dict:
        cj = self._get(name)
        now = datetime.now(timezone.utc)
        for attempt in range(5):  # run ids are unique per second: a second run-now in the same second moves on
            try:
                job = W.run_job_from_cronjob(cj, W.manual_run_name(name, now + timedelta(seconds=attempt)),
                                             trigger, parameters)
            except W.WorkloadError as e:
                raise BadRequest(str(e)) from None
            try:
                return W.run_view(self.ws.call(self.ws.kube.create, job, what=f"run of {name}"))
            except Conflict:
                continue
        raise Conflict(f"too many runs of {name!r} started at once; try again")

    def _records(self, name: str) -> dict[str, dict]:
        """run id -> the newest run.json the runner wrote for it."""
        out: dict[str, dict] = {}
        for rec in runner.find_runs(self.ws.local(f"{W.STATE_DIR}/runs/{name}")):
            out.setdefault(rec.get("run_id", ""), rec)
        return out

    def runs(self, name: str) -> list[dict]:
        self._get(name)
        jobs = self.ws.call(self.ws.kube.items, *JOB, label_selector=f"{W.SCHEDULE_LABEL}={name}")
        pods = self.ws.pods(f"{W.SCHEDULE_LABEL}={name}")
        records = self._records(name)
        views = []
        for job in jobs:
            jn = job["metadata"]["name"]
            mine = [p for p in pods if p["metadata"].get("labels", {}).get(W.JOB_NAME_LABEL) == jn]
            views.append(W.run_view(job, mine, (), records.get(jn)))
        views.sort(key=lambda v: v.get("created") or "", reverse=True)
        return views

    def _run_job(self, name: str, run_id: str) -> dict:
        self._get(name)
        job = self.ws.call(self.ws.kube.get, *JOB, run_id) if is_dns_label(run_id) else None
        if job is None or job["metadata"].get("labels", {}).get(W.SCHEDULE_LABEL) != name:
            raise NotFound(f"run {run_id!r} of schedule {name!r} not found")
        return job

    def _run_pods(self, run_id: str) -> list[dict]:
        pods = self.ws.pods(f"{W.JOB_NAME_LABEL}={run_id}")
        return sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")

    def run(self, name: str, run_id: str) -> dict:
        job = self._run_job(name, run_id)
        pods = self._run_pods(run_id)
        events = self.ws.events_for({run_id, *(p["metadata"]["name"] for p in pods)},
                                    since=job["metadata"].get("creationTimestamp"))
        view = W.run_view(job, pods, events, self._records(name).get(run_id))
        view["events"] = [event_view(e) for e in events]
        return view

    def run_events(self, name: str, run_id: str) -> list[dict]:
        job = self._run_job(name, run_id)
        pods = self._run_pods(run_id)
        return [event_view(e) for e in self.ws.events_for({run_id, *(p["metadata"]["name"] for p in pods)},
                                                          since=job["metadata"].get("creationTimestamp"))]

    def run_logs(self, name: str, run_id: str, follow: bool = False, tail_lines: int | None = None) -> Iterator[bytes]:
        """The log of the run's latest pod (its latest attempt)."""
        self._run_job(name, run_id)
        pods = self._run_pods(run_id)
        if not pods:
            raise Conflict(f"run {run_id!r} has no pod (yet, or any more): see its events")
        pod = pods[-1]
        if pod.get("status", {}).get("phase") == "Pending" and not W.pod_started(pod):
            raise Conflict(f"run {run_id!r} has not started: "
                           + (W.pending_reason([pod]) or "its pod is pending"))
        return self.ws.call(self.ws.kube.logs, pod["metadata"]["name"], follow=follow, tail_lines=tail_lines)

