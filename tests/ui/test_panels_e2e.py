"""The kubelab sidebar in a real browser, against a real server on devcluster (no mocked API).

User ``ui-alice`` (in the GPU group) works only through the panels: she
schedules a notebook from its toolbar and watches the run finish, submits a
job and reads its logs, registers and deploys a model and sends it a test
request, browses and previews a dataset, and reads her quota. Every panel is
screenshotted (test-artifacts/ui/), in the light and the dark theme.
"""
from __future__ import annotations

import json
import re

import pytest

from tests.server_extension.conftest import UserServer, notebook
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

USER = "ui-alice"
IRIS = """
import os, numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from skl2onnx import to_onnx
X, y = load_iris(return_X_y=True)
X = X.astype(np.float32)
os.makedirs("ui-models/iris", exist_ok=True)
lr = LogisticRegression(max_iter=500).fit(X, y)
open("ui-models/iris/model.onnx", "wb").write(to_onnx(lr, X[:1], options={"zipmap": False}).SerializeToString())
print("saved")
"""


@pytest.fixture(scope="module")
def me(hub) -> UserServer:
    return UserServer(hub, USER)


@pytest.fixture(scope="module")
def lab(lab_for, me):
    lab = lab_for(USER, groups=["gpu-users"])
    yield lab
    assert not [e for e in lab.errors if "kubelab" in e.lower()], f"uncaught errors in the page: {lab.errors}"


def _clean(me: UserServer, kind: str, *names: str) -> None:
    """Delete what an earlier run left, and wait until it is gone (deletion is asynchronous)."""
    for n in names:
        me.api("DELETE", f"{kind}/{n}")
    eventually(lambda: all(me.api("GET", f"{kind}/{n}").status_code == 404 for n in names), 120, 1,
               what=f"old {kind} gone")


def test_schedule_a_notebook_from_its_toolbar_and_watch_the_run(lab, me):
    _clean(me, "schedules", "ui-hello")
    me.put_file("ui/hello.ipynb", notebook("print(greeting + ' from the panel')", parameters="greeting = 'hi'"))
    page = lab.page
    lab.open("ui/hello.ipynb")
    page.locator(".jp-NotebookPanel-toolbar [data-command='kubelab:schedule-notebook']").first.click()
    panel = lab.panel("schedules")
    assert panel.get_by_label("Notebook", exact=True).input_value() == "ui/hello.ipynb"
    panel.get_by_label("Name", exact=True).fill("ui-hello")
    panel.get_by_label("Schedule", exact=True).fill("30 6 * * 1-5")
    preview = panel.get_by_test_id("kubelab-cron-preview")
    preview.locator("li").first.wait_for()
    assert preview.locator("li").count() >= 3
    panel.get_by_label("Parameters", exact=True).fill("greeting=bonjour")
    panel.get_by_role("button", name="Create", exact=True).click()

    row = lab.row(panel, "ui-hello")
    row.wait_for()
    created = me.ok("GET", "schedules/ui-hello")
    assert created["schedule"] == "30 6 * * 1-5" and created["resource_group"] == "cpu" and created["gpus"] == 0
    row.get_by_role("button", name="Run now", exact=True).click()
    run = panel.get_by_test_id("kubelab-run").first
    run.wait_for()
    assert lab.wait_run() == "Succeeded", run.inner_text()
    run.get_by_role("button", name="Logs", exact=True).click()
    logs = panel.get_by_test_id("kubelab-logs")
    logs.wait_for()
    eventually(lambda: "bonjour from the panel" in logs.inner_text(), 60, 1, what="run log in the viewer")
    lab.shot("schedules", panel)

    row.get_by_role("button", name="Suspend", exact=True).click()
    eventually(lambda: me.ok("GET", "schedules/ui-hello")["suspend"] is True, 30, 1, what="suspended")
    row.get_by_role("button", name="Resume", exact=True).wait_for()


def test_submit_a_job_and_read_its_logs(lab, me):
    _clean(me, "jobs", "ui-train")
    me.put_file("ui/train.py", "import sys\nprint('epoch 1 loss 0.5', flush=True)\nprint('done', sys.argv[1:])\n")
    panel = lab.panel("jobs")
    panel.get_by_role("button", name="Submit job", exact=True).click()
    panel.get_by_label("Name", exact=True).fill("ui-train")
    panel.get_by_label("Source", exact=True).fill("ui/train.py")
    group = panel.get_by_label("Resource group", exact=True)
    options = group.locator("option").all_inner_texts()
    assert any("GPU" in o for o in options), options  # the picker shows free GPUs / headroom per group
    group.select_option("cpu")
    panel.get_by_role("button", name="Submit", exact=True).click()
    row = lab.row(panel, "ui-train")
    row.wait_for()
    assert lab.wait_status("jobs", "ui-train") == "Succeeded"
    row.get_by_role("button", name="Logs", exact=True).click()
    logs = panel.get_by_test_id("kubelab-logs")
    eventually(lambda: "epoch 1 loss 0.5" in logs.inner_text(), 60, 1, what="job log in the viewer")
    lab.shot("jobs", panel)


def test_register_deploy_and_send_a_test_request(lab, me):
    _clean(me, "services", "ui-iris")
    _clean(me, "models", "ui-iris")
    assert "saved" in me.execute(IRIS, timeout=300)
    models = lab.panel("models")
    models.get_by_role("button", name="Register version", exact=True).click()
    models.get_by_label("Model", exact=True).fill("ui-iris")
    models.get_by_label("Artifact", exact=True).fill("ui-models/iris")
    models.get_by_role("button", name="Register", exact=True).click()
    row = lab.row(models, "ui-iris")
    row.wait_for(timeout=180_000)
    if row.get_by_role("button", name="ui-iris", exact=True).get_attribute("aria-expanded") != "true":
        row.get_by_role("button", name="ui-iris", exact=True).click()
    verdict = models.get_by_test_id("kubelab-verdict").first
    verdict.wait_for()
    assert "valid" in verdict.inner_text().lower()
    lab.shot("models", models)
    deploy = row.get_by_role("button", name="Deploy", exact=True).first
    eventually(lambda: deploy.is_enabled(), 60, 0.5, what="Deploy enabled (the version is valid)")
    lab.settle()
    deploy.click()
    row.get_by_role("status").filter(has_text="Deploying").wait_for()
    eventually(lambda: me.api("GET", "services/ui-iris").status_code == 200, 60, 1,
               what=f"the service deployed (alerts: {models.get_by_role('alert').all_inner_texts()})")

    services = lab.panel("services")
    srow = lab.row(services, "ui-iris")
    srow.wait_for(timeout=120_000)
    lab.wait_status("services", "ui-iris", ("Ready",))
    if srow.get_by_role("button", name="ui-iris", exact=True).get_attribute("aria-expanded") != "true":
        srow.get_by_role("button", name="ui-iris", exact=True).click()
    services.get_by_label("Request", exact=True).fill(json.dumps({"data": [[5.1, 3.5, 1.4, 0.2]]}))
    services.get_by_role("button", name="Send", exact=True).click()
    resp = services.get_by_test_id("kubelab-predict-response")
    eventually(lambda: "outputs" in resp.inner_text(), 60, 1, what="prediction shown")
    answer = json.loads(resp.inner_text())
    assert answer["model"] == "ui-iris" and answer["outputs"]["label"] == [0], answer
    services.get_by_role("button", name="Logs", exact=True).click()
    log = services.get_by_test_id("kubelab-logs")
    eventually(lambda: "model 'ui-iris'" in log.inner_text(), 60, 1, what="the model server's log")
    lab.shot("services", services)


def test_browse_and_preview_a_dataset(lab, me):
    me.put_file("ui/data/iris.csv", "sepal_length,species\n5.1,setosa\n7.0,versicolor\n6.3,virginica\n")
    panel = lab.panel("datasets")
    panel.get_by_label("Search", exact=True).fill("ui/data")
    key = f"users/{USER}/ui/data/iris.csv"
    row = lab.row(panel, key)
    row.wait_for()
    row.locator("button[aria-expanded]").first.click()
    table = panel.get_by_test_id("kubelab-preview")
    table.wait_for()
    text = table.inner_text()
    assert "sepal_length" in text and "versicolor" in text
    lab.shot("datasets", panel)


def test_resources_show_quota_bars(lab, me):
    panel = lab.panel("resources")
    bar = panel.locator('[data-testid="kubelab-quota"][data-resource="requests.cpu"]')
    bar.wait_for()
    api = {r["resource"]: r for r in me.ok("GET", "resources")["quota"]}
    assert api["requests.cpu"]["hard"] in bar.inner_text()
    prog = bar.locator("progress, [role=progressbar]").first
    value = prog.get_attribute("aria-valuenow") or prog.get_attribute("value")
    assert float(value) > 0  # the server itself holds CPU
    lab.shot("resources", panel)


def test_every_panel_in_the_dark_theme(lab):
    page = lab.page
    page.get_by_text("Settings", exact=True).first.click()
    page.get_by_text("Theme", exact=True).first.hover()
    page.get_by_text("JupyterLab Dark", exact=True).first.click()
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=60_000)
    for name in ("datasets", "schedules", "jobs", "models", "services", "resources"):
        lab.shot(f"{name}-dark", lab.panel(name))
    bg = page.evaluate("() => getComputedStyle(document.querySelector('#kubelab-sidebar')).backgroundColor")
    r, g, b = [int(x) for x in re.findall(r"\d+", bg)[:3]]
    assert r + g + b < 200, f"the sidebar is not dark in the dark theme: {bg}"
    page.get_by_text("Settings", exact=True).first.click()
    page.get_by_text("Theme", exact=True).first.hover()
    page.get_by_text("JupyterLab Light", exact=True).first.click()
