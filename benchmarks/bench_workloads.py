"""Scheduled-notebook benchmark (`make bench-workloads`): figures, not assertions.

Measured side by side in one run, on devcluster with JupyterHub + KubelabSpawner
(user ``wl-bench``, resource group ``cpu``) and a tiny two-cell notebook whose
first cell records ``time.time()``:

1. run now -> first cell executing: wall time just before ``POST
   schedules/<name>/runs`` to the first cell's ``time.time()`` (the run's pod is
   a local process of this machine, so the clocks agree), ``--rounds`` times;
2. CronJob firing -> first cell executing, on a dedicated ``* * * * *``
   schedule (``--cron-firings`` firings, minutes; ``--no-cron`` skips it):
   first cell minus the Job's ``batch.kubernetes.io/cronjob-scheduled-timestamp``,
   and the CronJob controller's own lag (Job creationTimestamp, 1 s resolution,
   and the moment a watch saw the Job) minus that timestamp;
3. the runner (``python -m kubelab.server_extension.runner``: papermill, then
   an nbconvert HTML export and run.json) against the plain ``papermill`` CLI on
   the same notebook, locally (no cluster), alternating, ``--rounds`` each.

Where the time goes comes from a watch on the user's Jobs and pods (when this
process saw each change) and papermill's own timestamps in the executed
notebook (notebook start: after imports; first cell start: after the kernel
started). Runs get the resource group's CPU limit (devcluster's ``cpu`` group:
500m), enforced as a CFS quota, and the start of a run is CPU-bound (imports,
kernel start), so it is printed next to the figures. p95 over 5 rounds is the
slowest round. Everything is cleaned up at
the end (schedules deleted, the server stopped; run outputs stay in the home).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devcluster.kube import Client, list_watch  # noqa: E402
from devcluster.paths import State  # noqa: E402
from common import diff, fmt, hub_up, machine, pct, say  # noqa: E402
from tests.server_extension.conftest import UserServer, notebook  # noqa: E402

USER = "wl-bench"
NOW_SCHEDULE, CRON_SCHEDULE = "bench-now", "bench-cron"
NB_PATH = "bench/workload.ipynb"
SCHEDULED_TS = "batch.kubernetes.io/cronjob-scheduled-timestamp"
SCHEDULE_LABEL = "kubelab.io/schedule"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
MARKER = "KUBELAB_BENCH_FIRST_CELL"
FIRST_CELL = f"import time\n_t0 = time.time()\nprint(f'{MARKER}={{_t0:.6f}}')"
NB = notebook(FIRST_CELL, "print(sum(range(100_000)))")
RUN_TIMEOUT = 240


# --- small helpers ----------------------------------------------------------------------------


def ts(value: str | None) -> float | None:
    """An RFC 3339 / ISO 8601 time (Kubernetes', papermill's) as epoch seconds."""
    if not value:
        return None
    t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


def notebook_times(nb: dict) -> dict:
    """papermill's timestamps and the first cell's time.time() from an executed notebook."""
    meta = (nb.get("metadata") or {}).get("papermill") or {}
    out = {"pm_start": ts(meta.get("start_time")), "pm_end": ts(meta.get("end_time")),
           "cell_start": None, "t0": None}
    for cell in nb.get("cells") or []:
        if cell.get("cell_type") != "code":
            continue
        if out["cell_start"] is None:
            out["cell_start"] = ts(((cell.get("metadata") or {}).get("papermill") or {}).get("start_time"))
        for o in cell.get("outputs") or []:
            text = o.get("text")
            text = "".join(text) if isinstance(text, list) else (text or "")
            m = re.search(rf"{MARKER}=([0-9.]+)", text)
            if m:
                out["t0"] = float(m.group(1))
        if out["t0"] is not None:
            break
    return out


LOG_MARKS = {"input": "Input Notebook:", "kernel": "Executing notebook with kernel",
             "done": "kubelab: run "}


def log_marks(lines: list[tuple[float, str]]) -> dict:
    """When the first line with each of LOG_MARKS' texts was written (papermill's and the runner's log)."""
    out = dict.fromkeys(LOG_MARKS)
    for t, text in lines:
        for key, needle in LOG_MARKS.items():
            if out[key] is None and needle in text and (key != "done" or "succeeded" in text):
                out[key] = t
    return out


# --- a watch on the user's Jobs and pods: when each change was seen ---------------------------


class Timeline:
    """Wall-clock times at which this process saw each Job and pod of a namespace change."""

    def __init__(self, admin: Client, namespace: str):
        self.cv = threading.Condition()
        self.stop = threading.Event()
        self.jobs: dict[str, dict] = {}
        self.pods: dict[str, dict] = {}
        self._listed = {"jobs": threading.Event(), "pods": threading.Event()}
        for kind, api, on_set in (("jobs", "batch/v1", self._job), ("pods", "v1", self._pod)):
            path = Client.path(api, kind, namespace)
            threading.Thread(target=list_watch, daemon=True, name=f"watch-{kind}", args=(
                admin, path, self.stop, self._replace(kind, on_set), on_set, lambda o: None, kind)).start()
        for ev in self._listed.values():
            ev.wait(30)

    def _replace(self, kind: str, on_set):
        def replace_all(items: list[dict]) -> None:
            store = self.jobs if kind == "jobs" else self.pods
            with self.cv:
                for obj in items:  # existed before (or during a re-list): no "seen" time
                    store.setdefault(obj["metadata"]["name"], {"seen": None})
            for obj in items:
                on_set(obj)
            self._listed[kind].set()
        return replace_all

    def _job(self, job: dict) -> None:
        now = time.time()
        with self.cv:
            rec = self.jobs.setdefault(job["metadata"]["name"], {"seen": now})
            rec["obj"] = job
            for c in job.get("status", {}).get("conditions") or []:
                if c["type"] in ("Complete", "Failed") and c["status"] == "True" and "done" not in rec:
                    rec["done"], rec["status"] = now, c["type"]
            self.cv.notify_all()

    def _pod(self, pod: dict) -> None:
        now = time.time()
        st = pod.get("status", {})
        with self.cv:
            rec = self.pods.setdefault(pod["metadata"]["name"], {"seen": now})
            rec["name"] = pod["metadata"]["name"]
            rec["job"] = pod["metadata"].get("labels", {}).get(JOB_NAME_LABEL)
            cs = (st.get("containerStatuses") or [{}])[0].get("state") or {}
            if pod.get("spec", {}).get("nodeName"):
                rec.setdefault("scheduled", now)
            if "running" in cs or st.get("phase") == "Running":
                rec.setdefault("running", now)
            if "terminated" in cs or st.get("phase") in ("Succeeded", "Failed"):
                rec.setdefault("finished", now)
            self.cv.notify_all()

    def wait(self, predicate, timeout: float):
        with self.cv:
            return self.cv.wait_for(predicate, timeout)

    def job_done(self, name: str, timeout: float = RUN_TIMEOUT) -> dict | None:
        self.wait(lambda: "done" in self.jobs.get(name, {}), timeout)
        return self.jobs.get(name)

    def pod_of(self, job: str) -> dict:
        with self.cv:
            recs = [p for p in self.pods.values() if p.get("job") == job and p.get("seen")]
        return min(recs, key=lambda p: p["seen"]) if recs else {}


# --- the cluster side ---------------------------------------------------------------------------


def pod_log_marks(admin: Client, namespace: str, pod: str | None) -> dict:
    """log_marks of a pod's log, with the node agent's own line timestamps (RFC 3339, ns)."""
    if not pod:
        return dict.fromkeys(LOG_MARKS)
    r = admin.session.get(admin.server + Client.path("v1", "pods", namespace, pod, "log"),
                          params={"timestamps": "true"}, timeout=30)
    lines = []
    for line in r.text.splitlines() if r.ok else []:
        stamp, _, text = line.partition(" ")
        try:
            lines.append((ts(stamp), text))
        except ValueError:
            continue
    return log_marks(lines)


def run_output(user: UserServer, admin: Client, tl: Timeline, schedule: str, run_id: str) -> dict:
    """Everything seen of one finished run: watch times, papermill's times, log line times."""
    view = user.ok("GET", f"schedules/{schedule}/runs/{run_id}")
    times = {"pm_start": None, "pm_end": None, "cell_start": None, "t0": None}
    if view.get("output_notebook"):
        r = user.get_file(urllib.parse.quote(view["output_notebook"]) + "?content=1")
        if r.ok:
            times = notebook_times(r.json().get("content") or {})
    job = tl.jobs.get(run_id, {})
    pod = tl.pod_of(run_id)
    marks = pod_log_marks(admin, user.namespace, pod.get("name"))
    return {"job_seen": job.get("seen"), "pod_seen": pod.get("seen"), "pod_running": pod.get("running"),
            **marks, **times, "pod_finished": pod.get("finished"), "job_done": job.get("done"),
            "status": job.get("status") or view.get("status")}


def run_resources(job: dict) -> dict:
    """The run container's resources (its CPU limit is the CFS quota the node agent applies)."""
    try:
        return job["obj"]["spec"]["template"]["spec"]["containers"][0].get("resources") or {}
    except (KeyError, IndexError):
        return {}


def run_now_rounds(user: UserServer, admin: Client, tl: Timeline, rounds: int) -> list[dict]:
    user.api("DELETE", f"schedules/{NOW_SCHEDULE}")
    user.ok("POST", "schedules", 201, json={"name": NOW_SCHEDULE, "notebook": NB_PATH, "schedule": "0 0 1 1 *",
                                            "timezone": "UTC", "parameters": {}, "suspend": True})
    results = []
    for i in range(rounds):
        t_post = time.time()
        run = user.ok("POST", f"schedules/{NOW_SCHEDULE}/runs", 201)
        t_resp = time.time()
        tl.job_done(run["id"])
        p = run_output(user, admin, tl, NOW_SCHEDULE, run["id"])
        p.update(t_post=t_post, t_resp=t_resp, latency=diff(t_post, p["t0"]),
                 resources=run_resources(tl.jobs.get(run["id"], {})))
        results.append(p)
        say(f"  run now {i + 1}/{rounds}: {p['status']}, first cell after {fmt(p['latency'], 0)} s "
            f"(POST answered {fmt(diff(t_post, t_resp), 0)} s, pod Running {fmt(diff(t_post, p['pod_running']), 0)} s, "
            f"papermill start {fmt(diff(t_post, p['pm_start']), 0)} s, Job complete {fmt(diff(t_post, p['job_done']), 0)} s; "
            f"load {os.getloadavg()[0]:.2f})")
    return results


def cron_firings(user: UserServer, admin: Client, tl: Timeline, firings: int) -> list[dict]:
    user.api("DELETE", f"schedules/{CRON_SCHEDULE}")
    created = time.time()
    user.ok("POST", "schedules", 201, json={"name": CRON_SCHEDULE, "notebook": NB_PATH, "schedule": "* * * * *",
                                            "timezone": "UTC", "parameters": {}, "suspend": False})
    say(f"  schedule {CRON_SCHEDULE} ('* * * * *') created; first firing in "
        f"{60 - created % 60:.0f} s, waiting for {firings}")

    def fired() -> list[str]:
        names = [n for n, r in tl.jobs.items() if r.get("seen") and "obj" in r
                 and r["obj"]["metadata"].get("labels", {}).get(SCHEDULE_LABEL) == CRON_SCHEDULE
                 and SCHEDULED_TS in r["obj"]["metadata"].get("annotations", {})]
        return sorted(names, key=lambda n: tl.jobs[n]["seen"])

    try:
        tl.wait(lambda: len(fired()) >= firings, firings * 60 + 90)
    finally:  # no further firing while the last runs finish
        user.api("PATCH", f"schedules/{CRON_SCHEDULE}", json={"suspend": True})
    results = []
    with tl.cv:
        names = fired()[:firings]
    for name in names:
        meta = tl.job_done(name)["obj"]["metadata"]
        scheduled = ts(meta["annotations"][SCHEDULED_TS])
        p = run_output(user, admin, tl, CRON_SCHEDULE, name)
        p.update(scheduled=scheduled, job_created=ts(meta.get("creationTimestamp")),
                 latency=diff(scheduled, p["t0"]))
        results.append(p)
        say(f"  firing {meta['annotations'][SCHEDULED_TS]}: {p['status']}, first cell after "
            f"{fmt(p['latency'], 0)} s (Job created +{fmt(diff(scheduled, p['job_created']), 0)} s, "
            f"seen +{fmt(diff(scheduled, p['job_seen']), 0)} s, pod Running +{fmt(diff(scheduled, p['pod_running']), 0)} s; "
            f"load {os.getloadavg()[0]:.2f})")
    if len(results) < firings:
        say(f"  only {len(results)} of {firings} firings seen")
    return results


# --- the local side: runner vs plain papermill ------------------------------------------------


def timed_process(argv: list[str], cwd: Path, env: dict) -> dict:
    """Run ``argv``; when it was spawned and exited, and when each of LOG_MARKS' lines appeared."""
    t = time.time()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
    lines = [(time.time(), line) for line in proc.stdout]
    rc = proc.wait()
    return {"spawn": t, "exit": time.time(), "rc": rc, **log_marks(lines)}


def local_rounds(rounds: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-workloads-"))
    src = work / "workload.ipynb"
    src.write_text(json.dumps(NB))
    papermill = Path(sys.executable).parent / "papermill"
    if not papermill.exists():
        papermill = REPO / ".venv" / "bin" / "papermill"
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONUNBUFFERED="1")

    def runner(i: int) -> dict:
        root = work / f"runner-{i}"
        r = timed_process([sys.executable, "-m", "kubelab.server_extension.runner", "--notebook", str(src),
                           "--output-root", str(root), "--cwd", str(work)], work, env)
        out = next(root.glob("*/workload.ipynb"), None)
        r.update(notebook_times(json.loads(out.read_text())) if out else {})
        return {**r, "html": next(root.glob("*/workload.html"), None), "nb": out}

    def plain(i: int) -> dict:
        out = work / f"papermill-{i}.ipynb"
        r = timed_process([str(papermill), str(src), str(out)], work, env)
        r.update(notebook_times(json.loads(out.read_text())) if out.exists() else {})
        return r

    def imports_and_export(nb: Path) -> dict:
        """In a fresh python, in the runner's order: import papermill, import nbconvert, export HTML."""
        code = ("import sys, time\nt0 = time.perf_counter()\nimport papermill\nt1 = time.perf_counter()\n"
                "import nbconvert, nbformat\nt2 = time.perf_counter()\n"
                "from kubelab.server_extension.runner import _export_html\n"
                "_export_html(sys.argv[1], sys.argv[2])\nt3 = time.perf_counter()\n"
                "print(t1 - t0, t2 - t1, t3 - t2)")
        proc = subprocess.run([sys.executable, "-c", code, str(nb), str(work / "export.html")],
                              capture_output=True, text=True, env=env, cwd=work)
        try:
            papermill_s, nbconvert_s, render_s = (float(x) for x in proc.stdout.split())
        except ValueError:
            papermill_s = nbconvert_s = render_s = None
        return {"papermill": papermill_s, "nbconvert": nbconvert_s, "render": render_s}

    res: dict[str, list] = {"runner": [], "papermill": [], "imports": []}
    try:
        for i in range(rounds):
            order = ("runner", "papermill") if i % 2 == 0 else ("papermill", "runner")
            for which in order:
                res[which].append(runner(i) if which == "runner" else plain(i))
            last = res["runner"][-1]
            if last.get("nb"):
                res["imports"].append(imports_and_export(last["nb"]))
            r, p = res["runner"][-1], res["papermill"][-1]
            say(f"  local {i + 1}/{rounds} ({' then '.join(order)}): runner {fmt(r['exit'] - r['spawn'], 0)} s "
                f"(rc {r['rc']}, html {'yes' if r.get('html') else 'NO'}), "
                f"papermill {fmt(p['exit'] - p['spawn'], 0)} s (rc {p['rc']}); load {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return res


# --- report --------------------------------------------------------------------------------------


class Table:
    def __init__(self):
        self.rows: list[tuple[str, str, str, str]] = []

    def section(self, title: str) -> None:
        self.rows.append((f"[{title}]", "", "", ""))

    def add(self, label: str, values: list[float | None]) -> float | None:
        v = [x for x in values if x is not None]
        p50 = pct(v, 0.5)
        self.rows.append((label, fmt(p50), fmt(pct(v, 0.95)), str(len(v))))
        return p50

    def ratio(self, label: str, a: float | None, b: float | None) -> None:
        r = f"{a / b:7.2f}x" if a is not None and b else "      -"
        self.rows.append((label, r, "", ""))

    def print(self) -> None:
        w = max(len(r[0]) for r in self.rows)
        say(f"{'':{w}}  {'p50 s':>8} {'p95 s':>8} {'n':>3}")
        for label, a, b, n in self.rows:
            say(f"{label:{w}}  {a:>8} {b:>8} {n:>3}")


def header(admin: Client | None, args: argparse.Namespace) -> None:
    say("kubelab scheduled-notebook benchmark (figures, not assertions)")
    say(machine())
    say(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if admin is not None:
        version = admin.get("/version").get("gitVersion")
        pods = admin.list("/api/v1/pods")["items"]
        running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
        servers = sorted(p["metadata"]["name"].removeprefix("jupyter-") for p in running
                         if p["metadata"]["name"].startswith("jupyter-"))
        say(f"devcluster Kubernetes {version}: {len(running)} pods running, user servers: "
            f"{', '.join(servers) or 'none'} (shared cluster: others' tests add noise)")
    say(f"notebook: 2 code cells (first records time.time()); rounds {args.rounds}, "
        f"cron firings {0 if args.no_cron else args.cron_firings}; run pods are local processes "
        "(devcluster node agent), same clock as this process")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_WORKLOADS_ROUNDS", "5")))
    ap.add_argument("--cron-firings", type=int, default=2)
    ap.add_argument("--no-cron", action="store_true", default=os.environ.get("BENCH_WORKLOADS_CRON") == "0",
                    help="skip the CronJob part (it waits for minute boundaries)")
    args = ap.parse_args()
    t_start = time.monotonic()

    state = State.default()
    hub = hub_up(state)
    admin = Client.from_kubeconfig(state.kubeconfig)
    header(admin, args)
    report: dict = {}

    say(f"\nspawning {USER} (resource group cpu)")
    hub.ensure_user(USER)
    t = time.monotonic()
    if not (hub.server(USER) or {}).get("ready"):
        hub.spawn(USER, {"resource_group": "cpu"})
    report["spawn_s"] = time.monotonic() - t
    user = UserServer(hub, USER)
    tl = Timeline(admin, user.namespace)
    try:
        user.put_file(NB_PATH, NB)
        say(f"\n1. run now -> first cell ({args.rounds} rounds)")
        report["now"] = run_now_rounds(user, admin, tl, args.rounds)
        if not args.no_cron:
            say(f"\n2. CronJob firing -> first cell ({args.cron_firings} firings)")
            report["cron"] = cron_firings(user, admin, tl, args.cron_firings)
    finally:
        for name in (NOW_SCHEDULE, CRON_SCHEDULE):
            user.api("DELETE", f"schedules/{name}")
        tl.stop.set()
        hub.stop(USER)
        say(f"\nschedules deleted, {USER}'s server stopped")

    say(f"\n3. runner vs plain papermill, locally ({args.rounds} rounds each, alternating)")
    report["local"] = local_rounds(args.rounds)

    # -- the table
    tab = Table()
    now = report["now"]
    tab.section(f"run now (POST runs) -> first cell, {len(now)} rounds, "
                f"{sum(r['status'] == 'Complete' for r in now)} succeeded")
    now_lat = tab.add("  POST -> first cell's time.time()", [r["latency"] for r in now])
    tab.add("    POST -> answered (Job created)", [diff(r["t_post"], r["t_resp"]) for r in now])
    tab.add("    POST -> Job seen by the watch", [diff(r["t_post"], r["job_seen"]) for r in now])

    def pod_path(rows: list[dict]) -> None:
        steps = [("job_seen", "pod_seen", "Job -> pod seen (job controller)"),
                 ("pod_seen", "pod_running", "pod -> Running seen (scheduler, node agent)"),
                 ("pod_running", "input", "Running -> papermill log (python, imports, run.json)"),
                 ("input", "pm_start", "papermill log -> its start time (read nb)"),
                 ("pm_start", "kernel", "papermill start -> kernel ready (save, kernel)"),
                 ("kernel", "t0", "kernel ready -> first cell's time.time()"),
                 ("pm_end", "done", "last cell end -> runner done (save, HTML, run.json)"),
                 ("done", "pod_finished", "runner done -> pod finished seen"),
                 ("pod_finished", "job_done", "pod finished -> Job complete seen")]
        for a, b, label in steps:
            tab.add(f"    {label}", [diff(r[a], r[b]) for r in rows])
    pod_path(now)
    tab.add("  POST -> Job complete seen (whole run)", [diff(r["t_post"], r["job_done"]) for r in now])

    cron_lat = None
    if "cron" in report:
        cron = report["cron"]
        tab.section(f"CronJob '* * * * *': scheduled time -> first cell, {len(cron)} firings, "
                    f"{sum(r['status'] == 'Complete' for r in cron)} succeeded")
        cron_lat = tab.add("  scheduled -> first cell's time.time()", [r["latency"] for r in cron])
        tab.add("    scheduled -> Job creationTimestamp (1 s res.)",
                [diff(r["scheduled"], r["job_created"]) for r in cron])
        tab.add("    scheduled -> Job seen by the watch", [diff(r["scheduled"], r["job_seen"]) for r in cron])
        pod_path(cron)

    loc = report["local"]
    rn, pm, imp = loc["runner"], loc["papermill"], loc["imports"]
    tab.section(f"local, no cluster: runner vs papermill CLI, {len(rn)} rounds each, alternating")
    walls, firsts, tails = {}, {}, {}
    for key, rows, what in (("runner", rn, "papermill + HTML export + run.json"), ("papermill", pm, "papermill CLI")):
        walls[key] = tab.add(f"  {key}: wall ({what})", [r["exit"] - r["spawn"] for r in rows])
        firsts[key] = tab.add("    spawn -> first cell's time.time()", [diff(r["spawn"], r.get("t0")) for r in rows])
        tab.add("      spawn -> papermill log (python, imports)", [diff(r["spawn"], r["input"]) for r in rows])
        tab.add("      papermill log -> its start time (read nb)", [diff(r["input"], r.get("pm_start")) for r in rows])
        tab.add("      papermill start -> kernel ready (save, kernel)", [diff(r.get("pm_start"), r["kernel"]) for r in rows])
        tab.add("      kernel ready -> first cell's time.time()", [diff(r["kernel"], r.get("t0")) for r in rows])
        if key == "runner":
            tab.add("    last cell end -> runner done (save, HTML, run.json)", [diff(r.get("pm_end"), r["done"]) for r in rows])
        tails[key] = tab.add("    last cell end -> process exit", [diff(r.get("pm_end"), r["exit"]) for r in rows])
    tab.add("  fresh python: import papermill", [x["papermill"] for x in imp])
    tab.add("    then import nbconvert (the runner's HTML export)", [x["nbconvert"] for x in imp])
    tab.add("    then HTMLExporter render + write", [x["render"] for x in imp])

    tab.section("ratios and differences (of p50s)")
    tab.ratio("  runner wall / papermill wall", walls["runner"], walls["papermill"])
    tab.ratio("  runner / papermill: spawn -> first cell", firsts["runner"], firsts["papermill"])
    if tails["runner"] is not None and tails["papermill"] is not None:
        tab.rows.append(("  runner tail - papermill tail (~ HTML export + run.json)",
                         fmt(tails["runner"] - tails["papermill"]), "", ""))
    tab.ratio("  cluster / local runner: start -> papermill log",
              pct([diff(r["pod_running"], r["input"]) for r in now], 0.5),
              pct([diff(r["spawn"], r["input"]) for r in rn], 0.5))
    tab.ratio("  cluster run now / local runner: -> first cell", now_lat, firsts["runner"])
    if now_lat is not None and firsts["runner"] is not None:
        tab.rows.append(("  cluster run now - local runner: -> first cell", fmt(now_lat - firsts["runner"]), "", ""))
    tab.ratio("  cron firing / run now: -> first cell", cron_lat, now_lat)

    say("")
    say(f"spawn of {USER}: {report['spawn_s']:.1f} s (0 when its server was already up); "
        f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"total {time.monotonic() - t_start:.0f} s")
    limits = next((r["resources"].get("limits") for r in now if r.get("resources")), None) or {}
    say(f"run pods' limits: {json.dumps(limits)} (CPU limit = the node agent's CFS quota, so the CPU-bound "
        "start of a run, imports and kernel, runs at that share of a core; the local runs have no limit)")
    say("the runner also exports the executed notebook to HTML (nbconvert) and writes run.json: "
        "that is the main work plain papermill does not do")
    tab.print()


if __name__ == "__main__":
    main()
