"""JupyterLab panels benchmark (`make bench-ui`): figures, not assertions.

Measured side by side in one run, in Debian's Chromium (Playwright), against a
real JupyterLab spawned by the hub on devcluster (user ``ui-bench``, group
``cpu``) whose kubelab extension talks to devcluster:

1. bundle size: the prebuilt extension's JavaScript (bytes and gzip), beside
   JupyterLab's own application bundle in the same environment;
2. first render with 1,000 items behind each panel: 1,000 objects under one
   prefix of the user's home (Datasets), 1,000 runs of one schedule
   (Schedules), 1,000 training jobs (Jobs), 1,000 versions of one model
   (Models). The runs and jobs are clones of one real run and one real job,
   created suspended (no pods); the versions are ModelVersion records built by
   core's own builder. Per panel:
   * cold: JupyterLab loaded with the sidebar open and every panel expanded,
     from navigation start to the panel's first row (also: to JupyterLab's
     shell being ready, so "after the shell" is what the panel adds);
   * expand: a click on the folder, the schedule or the model, to the first
     and to the last of the rows it shows;
   * the same REST call from Python through the proxy (the server's share).
   A MutationObserver in the page stamps the times (performance.now()), so no
   browser round trip is counted.
3. side by side: JupyterLab's own file browser opening the same 1,000-file
   folder (the home is an s3fs mount) against the Datasets panel opening it,
   to the first 100 entries shown (the Datasets panel's page).

Everything runs on one 2-core machine (browser, servers, the cluster): the
figures are relative. The items stay for the next run (``--cleanup`` removes
them and the user); the user's ResourceQuota is raised for the clones and
restored at the end.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import copy
import gzip
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from devcluster.kube import ApiError, Client  # noqa: E402
from devcluster.paths import State  # noqa: E402
from kubelab.core import models as M  # noqa: E402
from kubelab.core import workloads as W  # noqa: E402
from kubelab.core.settings import WorkspaceSettings  # noqa: E402
from common import admin_s3, fmt, hub_up, machine, pct, say  # noqa: E402
from tests.server_extension.conftest import UserServer, notebook  # noqa: E402
from tests.browser import CHROMIUM, CHROMIUM_ARGS, login  # noqa: E402
from tests.ui.conftest import Lab, ensure_server  # noqa: E402

USER = "ui-bench"
NS = f"kubelab-{USER}"
N = 1000
FOLDER = "bench1k"
SCHEDULE = "bench1k"
MODEL = "bench1k"
JOB_PREFIX = "bench1k-job"
RAISED = {"count/jobs.batch": str(3 * N), "pods": "40"}

# Stamps performance.now() the first time each watched selector reaches its count.
OBSERVER = """
window.__klMarks = {}; window.__klWatch = {};
window.__klCheck = () => {
  for (const [name, [sel, n]] of Object.entries(window.__klWatch)) {
    if (window.__klMarks[name] === undefined && document.querySelectorAll(sel).length >= n) {
      window.__klMarks[name] = performance.now();
    }
  }
};
new MutationObserver(() => window.__klCheck()).observe(document, {childList: true, subtree: true});
"""


def rows(panel: str, extra: str = "") -> str:
    return f'[data-testid="kubelab-panel-{panel}"] [data-testid="kubelab-row"]{extra}'


# --- seeding ----------------------------------------------------------------------------------------

def seed_objects(state: State) -> None:
    s3, bucket = admin_s3(state)
    prefix = f"users/{USER}/{FOLDER}/"
    have = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=N).get("KeyCount", 0)
    if have >= N:
        return
    say(f"  writing {N} objects under {prefix}")
    with cf.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=bucket, Key=f"{prefix}part-{i:04d}.csv",
                                              Body=f"id,value\n{i},{i * 2}\n".encode()), range(N)))


def clone(job: dict, name: str, labels: dict[str, str]) -> dict:
    """A suspended copy of a real Job under another name (the job controller adds its own selector)."""
    out = copy.deepcopy(job)
    meta = out["metadata"]
    keep = {k: v for k, v in meta.get("labels", {}).items() if "controller-uid" not in k and "job-name" not in k}
    out["metadata"] = {"name": name, "namespace": meta["namespace"], "labels": {**keep, **labels},
                       "annotations": meta.get("annotations", {})}
    if meta.get("ownerReferences"):
        out["metadata"]["ownerReferences"] = meta["ownerReferences"]
    out.pop("status", None)
    spec = out["spec"]
    spec.pop("selector", None)
    spec["suspend"] = True
    tl = spec["template"]["metadata"].get("labels", {})
    spec["template"]["metadata"]["labels"] = {k: v for k, v in tl.items()
                                              if "controller-uid" not in k and "job-name" not in k}
    return out


def create_many(admin: Client, objs: list[dict], path) -> None:
    def one(obj):
        try:
            admin.create(path(obj), obj)
        except ApiError as e:
            if e.status != 409:
                raise
    with cf.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, objs))


def count(admin: Client, api: str, resource: str, selector: str) -> int:
    return len(admin.list(Client.path(api, resource, NS), labelSelector=selector)["items"])


def wait_job(me: UserServer, path: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = me.ok("GET", path)
        if view.get("status") in ("Succeeded", "Failed"):
            return view
        time.sleep(2)
    raise RuntimeError(f"{path} did not finish")


def seed_runs_and_jobs(admin: Client, me: UserServer) -> None:
    jobs_path = lambda o: Client.path("batch/v1", "jobs", NS)  # noqa: E731
    if count(admin, "batch/v1", "jobs", f"{W.SCHEDULE_LABEL}={SCHEDULE}") < N:
        if me.api("GET", f"schedules/{SCHEDULE}").status_code == 404:
            me.put_file("bench/hello.ipynb", notebook("print('hello')"))
            me.ok("POST", "schedules", 201, json={"name": SCHEDULE, "notebook": "bench/hello.ipynb",
                                                  "schedule": "0 0 1 1 *", "resource_group": "cpu"})
        run = me.ok("POST", f"schedules/{SCHEDULE}/runs", 201)
        name = run.get("id") or run.get("name")
        wait_job(me, f"schedules/{SCHEDULE}/runs/{name}")
        real = admin.get(Client.path("batch/v1", "jobs", NS, name))
        say(f"  cloning run {name} {N - 1} times (suspended)")
        create_many(admin, [clone(real, f"{name}-c{i:04d}", {}) for i in range(N - 1)], jobs_path)
    if count(admin, "batch/v1", "jobs", W.JOB_LABEL) < N:
        if me.api("GET", f"jobs/{JOB_PREFIX}").status_code == 404:
            me.ok("POST", "jobs", 201, json={"name": JOB_PREFIX, "command": ["python", "-c", "print('ok')"],
                                             "resource_group": "cpu"})
        wait_job(me, f"jobs/{JOB_PREFIX}")
        real = admin.get(Client.path("batch/v1", "jobs", NS, JOB_PREFIX))
        say(f"  cloning job {JOB_PREFIX} {N - 1} times (suspended)")
        create_many(admin, [clone(real, f"{JOB_PREFIX}-{i:04d}", {W.JOB_LABEL: f"{JOB_PREFIX}-{i:04d}"})
                            for i in range(N - 1)], jobs_path)


def seed_versions(admin: Client, me: UserServer) -> None:
    if count(admin, M.API_VERSION, "modelversions", f"{M.MODEL_LABEL}={MODEL}") >= N:
        return
    ws = me.ok("GET", "workspace")
    settings = WorkspaceSettings(user=ws["user"], namespace=ws["namespace"], image=ws["image"])
    model_path = Client.path(M.API_VERSION, "models", NS)
    try:
        model = admin.create(model_path, M.model_object(settings, MODEL, "1,000 versions for bench-ui"))
    except ApiError as e:
        if e.status != 409:
            raise
        model = admin.get(Client.path(M.API_VERSION, "models", NS, MODEL))
    say(f"  writing {N} ModelVersion records")
    recs = [M.VersionRecord(model=MODEL, version=v, format="onnx",
                            artifact_uri=f"s3://bench/users/{USER}/.kubelab/models/{MODEL}/{v}/", files=("model.onnx",),
                            bytes=1024, sha256="0" * 64, verdict={"status": "valid", "reason": "bench record"},
                            metrics={"accuracy": 0.9}) for v in range(1, N + 1)]
    create_many(admin, [M.version_object(settings, r, model["metadata"]["uid"]) for r in recs],
                lambda o: Client.path(M.API_VERSION, "modelversions", NS))


def raise_quota(admin: Client) -> dict:
    """Room for the clones in the user's quota; returns what to restore."""
    q = admin.get(Client.path("v1", "resourcequotas", NS))["items"][0]
    before = {k: q["spec"]["hard"].get(k) for k in RAISED}
    admin.patch(Client.path("v1", "resourcequotas", NS, q["metadata"]["name"]), {"spec": {"hard": RAISED}})
    return {"name": q["metadata"]["name"], "hard": before}


def restore_quota(admin: Client, saved: dict) -> None:
    admin.patch(Client.path("v1", "resourcequotas", NS, saved["name"]), {"spec": {"hard": saved["hard"]}})


# --- measuring --------------------------------------------------------------------------------------

def api_ms(me: UserServer, path: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        me.ok("GET", path)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def cold_load(page, base: str, watch: dict[str, tuple[str, int]], timeout: float = 180) -> dict[str, float]:
    page.goto(base + "/lab")
    page.evaluate("w => { window.__klWatch = w; window.__klCheck(); }", {k: list(v) for k, v in watch.items()})
    page.wait_for_function("names => names.every(n => window.__klMarks[n] !== undefined)", arg=list(watch),
                           timeout=timeout * 1000)
    return page.evaluate("() => window.__klMarks")


def click_to(page, click_selector: str, watch: dict[str, tuple[str, int]], timeout: float = 120) -> dict[str, float]:
    """Click (in the page, no round trip) and return ms from the click to each watched selector's count."""
    t0 = page.evaluate("""([sel, w]) => {
        window.__klMarks = {}; window.__klWatch = w;
        const t0 = performance.now();
        document.querySelector(sel).click();
        window.__klCheck();
        return t0;
    }""", [click_selector, {k: list(v) for k, v in watch.items()}])
    page.wait_for_function("names => names.every(n => window.__klMarks[n] !== undefined)", arg=list(watch),
                           timeout=timeout * 1000)
    marks = page.evaluate("() => window.__klMarks")
    return {k: v - t0 for k, v in marks.items()}


def bundle() -> dict[str, float]:
    prefix = REPO / ".venv" / "share" / "jupyter"
    ours = list((prefix / "labextensions" / "kubelab" / "static").glob("*.js"))
    lab = list((prefix / "lab" / "static").glob("*.js"))
    if not ours:
        raise SystemExit("the labextension is not built into .venv: run `make venv`")
    size = lambda fs: sum(f.stat().st_size for f in fs)  # noqa: E731
    gz = lambda fs: sum(len(gzip.compress(f.read_bytes(), 6)) for f in fs)  # noqa: E731
    return {"ours": size(ours), "ours_gz": gz(ours), "lab": size(lab), "lab_gz": gz(lab), "files": len(ours)}


def kib(n: float) -> str:
    return f"{n / 1024:8.1f} KiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="measurements per figure (median and p95)")
    ap.add_argument("--cleanup", action="store_true", help="delete the 1,000-item fixtures and the user afterwards")
    args = ap.parse_args()
    state = State.default()
    say("# bench-ui: the kubelab JupyterLab panels")
    say(machine())
    b = bundle()
    say(f"bundle: kubelab {b['files']} JS files {kib(b['ours'])} ({kib(b['ours_gz'])} gzip); "
        f"JupyterLab's own {kib(b['lab'])} ({kib(b['lab_gz'])} gzip); kubelab adds "
        f"{100 * b['ours'] / b['lab']:.1f}% ({100 * b['ours_gz'] / b['lab_gz']:.1f}% gzip)")

    hub = hub_up(state)
    ensure_server(hub, USER)
    me = UserServer(hub, USER)
    admin = Client.from_kubeconfig(state.kubeconfig)
    saved = raise_quota(admin)
    try:
        say("seeding (kept for the next run):")
        seed_objects(state)
        seed_runs_and_jobs(admin, me)
        seed_versions(admin, me)
        measure(hub, me, args.rounds)
    finally:
        restore_quota(admin, saved)
        if args.cleanup:
            for sel, res, api in ((f"{W.SCHEDULE_LABEL}={SCHEDULE}", "jobs", "batch/v1"),
                                  (W.JOB_LABEL, "jobs", "batch/v1"),
                                  (f"{M.MODEL_LABEL}={MODEL}", "modelversions", M.API_VERSION)):
                admin.session.delete(admin.server + Client.path(api, res, NS), params={"labelSelector": sel})
            hub.delete_user(USER)


def measure(hub, me: UserServer, rounds: int) -> None:
    from playwright.sync_api import sync_playwright

    api = {
        "datasets": api_ms(me, f"datasets/browse?prefix=users/{USER}/{FOLDER}/&page_size=100", rounds),
        "schedules": api_ms(me, f"schedules/{SCHEDULE}/runs", rounds),
        "jobs": api_ms(me, "jobs", rounds),
        "models": api_ms(me, f"models/{MODEL}", rounds),
    }
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    try:
        ctx, page = login(browser, hub, USER)
        ctx.add_init_script(OBSERVER)
        base = f"/user/{USER}"
        page.goto(base + "/lab")
        page.wait_for_function("() => !document.querySelector('#jupyterlab-splash')", timeout=180_000)
        if not page.locator("#kubelab-sidebar").is_visible():
            page.locator('.jp-SideBar [data-id="kubelab-sidebar"]').click()
        page.wait_for_timeout(1500)  # the layout (sidebar open) is saved with the workspace

        cold_watch = {"shell": ("#jp-main-dock-panel:not(.lm-mod-hidden) ~ *, .jp-LabShell #jp-main-dock-panel", 1),
                      "jobs": (rows("jobs"), 1), "schedules": (rows("schedules"), 1),
                      "models": (rows("models"), 1), "datasets": (rows("datasets"), 1),
                      "resources": ('[data-testid="kubelab-quota"]', 1)}
        colds = [cold_load(page, base, cold_watch) for _ in range(rounds)]
        say(f"\ncold load, the sidebar open (ms from navigation start, median of {rounds}; p95):")
        shell = [c["shell"] for c in colds]
        say(f"  JupyterLab shell attached           {fmt(statistics.median(shell), 8, 0)}  ({fmt(pct(shell, .95), 6, 0)})")
        for name in ("datasets", "schedules", "jobs", "models", "resources"):
            v = [c[name] for c in colds]
            after = [c[name] - c["shell"] for c in colds]
            say(f"  {name:<10} first row              {fmt(statistics.median(v), 8, 0)}  ({fmt(pct(v, .95), 6, 0)})"
                f"   after the shell {fmt(statistics.median(after), 6, 0)}")

        say(f"\nexpand, 1,000 items behind it (ms from the click, median of {rounds}; p95; the REST call alone):")
        expand_rows = []
        lab = Lab(page, USER, Path("/tmp"))
        # Datasets: type the home prefix, then open the folder of 1,000 objects.
        lab.panel("datasets")
        prefix_box = page.locator('[data-testid="kubelab-panel-datasets"]').get_by_label("Prefix", exact=True)
        prefix_box.fill(f"users/{USER}/")
        prefix_box.press("Enter")  # Enter in Prefix opens that folder
        folder = f'[data-testid="kubelab-panel-datasets"] [data-testid="kubelab-row"][data-name="users/{USER}/{FOLDER}/"]'
        page.wait_for_selector(folder)
        files = rows("datasets", f'[data-kind="object"][data-name^="users/{USER}/{FOLDER}/"]')  # not the home's own files
        for _ in range(rounds):
            prefix_box.fill(f"users/{USER}/")
            prefix_box.press("Enter")
            page.wait_for_selector(folder)
            expand_rows.append(("datasets", click_to(page, folder + " button", {"first": (files, 1), "page": (files, 100)})))
        lab.panel("schedules")
        sched = f'{rows("schedules")}[data-name="{SCHEDULE}"] button[aria-expanded]'
        runs = '[data-testid="kubelab-run"]'
        for _ in range(rounds):
            if page.locator(sched).get_attribute("aria-expanded") == "true":
                page.click(sched)
            expand_rows.append(("schedules", click_to(page, sched, {"first": (runs, 1), "page": (runs, N)})))
        lab.panel("models")
        model = f'{rows("models")}[data-name="{MODEL}"] button[aria-expanded]'
        versions = '[data-testid="kubelab-version"]'
        for _ in range(rounds):
            if page.locator(model).get_attribute("aria-expanded") == "true":
                page.click(model)
            expand_rows.append(("models", click_to(page, model, {"first": (versions, 1), "page": (versions, N)})))
        for name in ("datasets", "schedules", "models"):
            firsts = [m["first"] for n, m in expand_rows if n == name]
            pages = [m["page"] for n, m in expand_rows if n == name]
            shown = 100 if name == "datasets" else N
            say(f"  {name:<10} first row {fmt(statistics.median(firsts), 7, 0)} ({fmt(pct(firsts, .95), 5, 0)})"
                f"   {shown} rows {fmt(statistics.median(pages), 7, 0)} ({fmt(pct(pages, .95), 5, 0)})"
                f"   REST alone {fmt(api[name], 6, 0)}")
        say(f"  jobs       (1,000 jobs: the list itself; REST alone {fmt(api['jobs'], 6, 0)})")

        # Side by side: JupyterLab's file browser on the same folder (the home is an s3fs mount).
        say(f"\nthe same {N} files: JupyterLab's file browser (s3fs home) against the Datasets panel:")
        fb = []
        item = ".jp-DirListing-item"
        for _ in range(rounds):
            page.goto(base + "/lab")
            page.wait_for_function("() => !document.querySelector('#jupyterlab-splash')", timeout=180_000)
            page.locator("#filebrowser:not(.jp-mod-restoring)").wait_for(state="attached")
            page.wait_for_timeout(1000)  # the saved layout (which sidebar tab is open) is applied
            tab = page.locator('.jp-SideBar [data-id="filebrowser"]')
            if tab.get_attribute("aria-selected") != "true":
                tab.click()
            page.locator("#filebrowser .jp-BreadCrumbs-home").click()  # the home's top level
            target = page.locator(item, has_text=FOLDER).first
            target.wait_for()
            page.evaluate("() => { window.__klMarks = {}; }")
            target.evaluate(f"""el => {{
                window.__klWatch = {{page: ['{item}', 100]}};
                window.__klT0 = performance.now();
                el.dispatchEvent(new MouseEvent('dblclick', {{bubbles: true, cancelable: true}}));
            }}""")
            page.wait_for_function("() => window.__klMarks.page !== undefined", timeout=300_000)
            fb.append(page.evaluate("() => window.__klMarks.page - window.__klT0"))
        ds = [m["page"] for n, m in expand_rows if n == "datasets"]
        say(f"  file browser, first 100       {fmt(statistics.median(fb), 8, 0)} ms ({fmt(pct(fb, .95), 6, 0)})")
        say(f"  Datasets panel, first 100     {fmt(statistics.median(ds), 8, 0)} ms ({fmt(pct(ds, .95), 6, 0)})")
        say(f"  ratio                          {statistics.median(fb) / statistics.median(ds):8.1f}x")
        ctx.close()
    finally:
        browser.close()
        pw.stop()


if __name__ == "__main__":
    main()
