"""The whole journey in one browser session, as a data scientist lives it.

Hub login -> the spawn form, GPU group with one GPU -> JupyterLab -> browse and
preview a shared dataset -> train on it with a GPU job -> register the model
(validated) -> serve it -> send a test request -> schedule the report notebook
and watch its run. Everything goes through the hub's pages and the kubelab
panels in Chromium; the API is only used to check what the user saw. Each
step is screenshotted (test-artifacts/ui/journey-*.png).
"""
from __future__ import annotations

import json

import pytest

from tests.server_extension.conftest import UserServer, notebook
from tests.browser import login
from tests.ui.conftest import Lab
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

USER = "ui-journey"
CSV = "sepal_length,sepal_width,petal_length,petal_width,species\n" + "\n".join(
    f"{r},{c}" for r, c in [
        ("5.1,3.5,1.4,0.2", 0), ("4.9,3.0,1.4,0.2", 0), ("4.7,3.2,1.3,0.2", 0), ("5.0,3.6,1.4,0.2", 0),
        ("7.0,3.2,4.7,1.4", 1), ("6.4,3.2,4.5,1.5", 1), ("6.9,3.1,4.9,1.5", 1), ("5.5,2.3,4.0,1.3", 1),
        ("6.3,3.3,6.0,2.5", 2), ("5.8,2.7,5.1,1.9", 2), ("7.1,3.0,5.9,2.1", 2), ("6.3,2.9,5.6,1.8", 2)]) + "\n"
TRAIN = """
import os, numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
from skl2onnx import to_onnx
df = pd.read_csv("datasets/ui-journey/iris.csv")
X = df.drop(columns="species").to_numpy(np.float32); y = df["species"].to_numpy()
print("GPUs:", os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
model = LogisticRegression(max_iter=1000).fit(X, y)
print("accuracy", model.score(X, y), flush=True)
os.makedirs("models/journey", exist_ok=True)
open("models/journey/model.onnx", "wb").write(to_onnx(model, X[:1], options={"zipmap": False}).SerializeToString())
"""


@pytest.fixture
def fresh_user(hub, s3_env):
    """ui-journey in the GPU group with no server, and a shared dataset to find."""
    import boto3

    hub.ensure_user(USER, ["gpu-users"])
    if hub.server(USER):
        hub.stop(USER)
    s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"])
    s3.put_object(Bucket=s3_env["KUBELAB_S3_BUCKET"], Key="datasets/ui-journey/iris.csv", Body=CSV.encode())
    yield UserServer(hub, USER)
    me = UserServer(hub, USER)
    for path in ("services/journey", "schedules/journey-report", "jobs/journey-train"):
        me.api("DELETE", path)
    hub.stop(USER)  # gives the GPU back


@pytest.fixture
def browser_page(chromium, hub, fresh_user):
    ctx, page = login(chromium, hub, USER)
    yield page
    ctx.close()


def test_login_spawn_on_a_gpu_browse_train_register_serve_predict_schedule(hub, fresh_user, browser_page, shots):
    me, page = fresh_user, browser_page
    lab = Lab(page, USER, shots)
    # 1. the spawn form: the GPU group, one GPU
    page.goto("/hub/spawn")
    page.locator("input[name=resource_group][value=gpu-a100]").check()
    page.fill("input[name=gpus-gpu-a100]", "1")
    assert "GPUs free" in page.locator("label.kubelab-group", has_text="NVIDIA A100").first.inner_text()
    lab.shot("journey-1-spawn-form")
    page.locator("form#spawn_form [type=submit]").click()
    page.wait_for_url(f"**/user/{USER}/lab**", timeout=300_000)
    lab.open()
    opts = hub.server(USER)["user_options"]
    assert opts["resource_group"] == "gpu-a100" and int(opts["gpus"]) == 1, opts

    # 2. a shared dataset: search, preview
    datasets = lab.panel("datasets")
    datasets.get_by_label("Search", exact=True).fill("datasets/ui-journey/")
    row = lab.row(datasets, "datasets/ui-journey/iris.csv")
    row.wait_for()
    row.locator("button[aria-expanded]").first.click()
    table = datasets.get_by_test_id("kubelab-preview")
    table.wait_for()
    assert "petal_width" in table.inner_text() and "6.3" in table.inner_text()
    lab.shot("journey-2-dataset", datasets)

    # 3. train on it: a job in the GPU group with one GPU
    me.put_file("train.py", TRAIN)
    jobs = lab.panel("jobs")
    jobs.get_by_role("button", name="Submit job", exact=True).click()
    jobs.get_by_label("Name", exact=True).fill("journey-train")
    jobs.get_by_label("Source", exact=True).fill("train.py")
    jobs.get_by_label("Resource group", exact=True).select_option("gpu-a100")
    jobs.get_by_label("GPUs", exact=True).fill("1")
    jobs.get_by_role("button", name="Submit", exact=True).click()
    job = lab.row(jobs, "journey-train")
    job.wait_for()
    assert lab.wait_status("jobs", "journey-train") == "Succeeded"
    job.get_by_role("button", name="Logs", exact=True).click()
    logs = jobs.get_by_test_id("kubelab-logs")
    eventually(lambda: "accuracy 1.0" in logs.inner_text(), 60, 1, what="the training log")
    gpus = logs.inner_text().split("GPUs:", 1)[1].split()[0]
    assert gpus not in ("None", ""), f"the job got no GPU: {gpus!r}"
    lab.shot("journey-3-train", jobs)

    # 4. register what it wrote (validated on registration)
    models = lab.panel("models")
    models.get_by_role("button", name="Register version", exact=True).click()
    models.get_by_label("Model", exact=True).fill("journey")
    models.get_by_label("Artifact", exact=True).fill("models/journey")
    models.get_by_role("button", name="Register", exact=True).click()
    mrow = lab.row(models, "journey")
    mrow.wait_for(timeout=180_000)
    name_button = mrow.get_by_role("button", name="journey", exact=True)
    if name_button.get_attribute("aria-expanded") != "true":
        name_button.click()
    verdict = models.get_by_test_id("kubelab-verdict").first
    verdict.wait_for()
    assert "valid" in verdict.inner_text().lower()
    lab.shot("journey-4-register", models)

    # 5. serve it
    deploy = mrow.get_by_role("button", name="Deploy", exact=True).first
    eventually(lambda: deploy.is_enabled(), 60, 0.5, what="Deploy enabled (the version is valid)")
    lab.settle()
    deploy.click()
    mrow.get_by_role("status").filter(has_text="Deploying").wait_for()
    services = lab.panel("services")
    srow = lab.row(services, "journey")
    srow.wait_for(timeout=120_000)
    lab.wait_status("services", "journey", ("Ready",))

    # 6. predict
    sbutton = srow.get_by_role("button", name="journey", exact=True)
    if sbutton.get_attribute("aria-expanded") != "true":
        sbutton.click()
    services.get_by_label("Request", exact=True).fill(json.dumps({"data": [[6.9, 3.1, 4.9, 1.5]]}))
    services.get_by_role("button", name="Send", exact=True).click()
    resp = services.get_by_test_id("kubelab-predict-response")
    eventually(lambda: "outputs" in resp.inner_text(), 60, 1, what="the prediction")
    answer = json.loads(resp.inner_text())
    assert answer["model"] == "journey" and answer["outputs"]["label"] == [1], answer
    lab.shot("journey-5-predict", services)

    # 7. schedule the report notebook from its toolbar, and run it now
    me.put_file("report.ipynb", notebook(
        "import json, urllib.request\nprint('report for', day)", parameters="day = 'today'"))
    lab.open("report.ipynb")
    page.locator(".jp-NotebookPanel-toolbar [data-command='kubelab:schedule-notebook']").first.click()
    schedules = lab.panel("schedules")
    schedules.get_by_label("Name", exact=True).fill("journey-report")
    schedules.get_by_label("Schedule", exact=True).fill("0 7 * * *")
    schedules.get_by_test_id("kubelab-cron-preview").locator("li").first.wait_for()
    schedules.get_by_label("Parameters", exact=True).fill("day=monday")
    schedules.get_by_role("button", name="Create", exact=True).click()
    srow = lab.row(schedules, "journey-report")
    srow.wait_for()
    srow.get_by_role("button", name="Run now", exact=True).click()
    run = schedules.get_by_test_id("kubelab-run").first
    assert lab.wait_run() == "Succeeded", run.inner_text()
    run.get_by_role("button", name="Logs", exact=True).click()
    logs = schedules.get_by_test_id("kubelab-logs")
    eventually(lambda: "report for monday" in logs.inner_text(), 60, 1, what="the run's log")
    lab.shot("journey-6-schedule", schedules)
    report = me.ok("GET", "schedules/journey-report")
    # the form's default for a schedule: the CPU group, no GPU (the server itself is on an A100)
    assert report["schedule"] == "0 7 * * *" and report["resource_group"] == "cpu" and report["gpus"] == 0, report
    assert not [e for e in lab.errors if "kubelab" in e.lower()], lab.errors
