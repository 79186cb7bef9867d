"""Session fixtures: the real devcluster (Kubernetes + S3) for end-to-end tests.

The cluster is started on demand (``python -m devcluster up``) and left running
for the next test run; ``make test`` ends with the teardown test, which stops it.
A cluster that cannot start fails the tests that need it: never a skip.
"""
from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from devcluster import cluster  # noqa: E402
from devcluster.paths import State  # noqa: E402

ARTIFACTS = REPO / "test-artifacts"


def pytest_collection_modifyitems(config, items):
    """Everything under tests/devcluster/ and any test using a cluster fixture is e2e."""
    cluster_fixtures = {"devcluster", "kube", "kubectl", "namespace", "s3_env", "hub"}
    for item in items:
        if cluster_fixtures & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def devcluster() -> State:
    """A running devcluster; started if it is not up."""
    state = State.default()
    if not cluster.status(state)["running"]:
        try:
            cluster.up(state)
        except Exception as e:  # noqa: BLE001 - turned into a clear test failure
            pytest.fail(f"devcluster could not start: {e}", pytrace=False)
    return state


@pytest.fixture(scope="session")
def kube(devcluster: State):
    """The official `kubernetes` Python client, configured with the admin kubeconfig."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(devcluster.kubeconfig))
    return client, api_client


class Kubectl:
    """Runs the devcluster's kubectl with the admin kubeconfig."""

    def __init__(self, state: State):
        self.binary = str(state.bin / "kubectl")
        self.kubeconfig = str(state.kubeconfig)

    def __call__(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120) -> str:
        proc = subprocess.run([self.binary, "--kubeconfig", self.kubeconfig, *args], input=input,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout if check else proc.stdout + proc.stderr

    def apply(self, manifest: str, namespace: str | None = None) -> str:
        ns = ["-n", namespace] if namespace else []
        return self(*ns, "apply", "-f", "-", input=manifest)

    def json(self, *args: str) -> dict:
        import json

        return json.loads(self(*args, "-o", "json"))


@pytest.fixture(scope="session")
def kubectl(devcluster: State) -> Kubectl:
    return Kubectl(devcluster)


@pytest.fixture
def namespace(kubectl: Kubectl, request):
    """A fresh namespace for one test, deleted afterwards (without waiting)."""
    name = f"t-{request.node.name[:30].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    name = "".join(c for c in name if c.isalnum() or c == "-")
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def s3_env(devcluster: State) -> dict[str, str]:
    """The S3 server's endpoint and platform credentials, from .devcluster/s3.env."""
    env = {}
    for line in devcluster.s3_env.read_text().splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export "):]
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k] = v.strip().strip("'\"")
    return env


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS



@pytest.fixture(scope="session")
def hub(devcluster: State):
    """JupyterHub with KubelabSpawner on devcluster, driven by the kubelab-tests service token."""
    from devcluster import hub as devhub
    from tests.hubclient import Hub

    try:
        url = devhub.up(devcluster)
    except Exception as e:  # noqa: BLE001 - a clear failure, never a skip
        pytest.fail(f"JupyterHub on devcluster could not start: {e}", pytrace=False)
    return Hub(url, devhub.test_token(devcluster))


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium (Debian's, via Playwright) for one test module.

    Per module, not per session: while Playwright's sync API is started, an
    asyncio loop runs in the main thread and other tests' ``asyncio.run`` fails.
    """
    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-deps.sh (Debian's chromium)", pytrace=False)
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    finally:
        pw.stop()
