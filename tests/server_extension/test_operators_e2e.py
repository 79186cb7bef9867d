"""Distributed jobs use Kubeflow's PyTorchJob when the cluster serves it, and
carry the Kueue queue label when Kueue is installed.

Only the two APIs are installed here (their CRDs, as the operators' charts
would install them, with open schemas); no operator runs, so the test checks
what kubelab creates and shows, against the real apiserver.
"""
from __future__ import annotations

import pytest

from tests.waiting import eventually

pytestmark = pytest.mark.e2e

CRDS = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: pytorchjobs.kubeflow.org}
spec:
  group: kubeflow.org
  scope: Namespaced
  names: {kind: PyTorchJob, plural: pytorchjobs, singular: pytorchjob, listKind: PyTorchJobList}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: localqueues.kueue.x-k8s.io}
spec:
  group: kueue.x-k8s.io
  scope: Namespaced
  names: {kind: LocalQueue, plural: localqueues, singular: localqueue, listKind: LocalQueueList}
  versions:
    - name: v1beta1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: inferenceservices.serving.kserve.io}
spec:
  group: serving.kserve.io
  scope: Namespaced
  names: {kind: InferenceService, plural: inferenceservices, singular: inferenceservice, listKind: InferenceServiceList}
  versions:
    - name: v1beta1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""
CRD_NAMES = ("pytorchjobs.kubeflow.org", "localqueues.kueue.x-k8s.io", "inferenceservices.serving.kserve.io")


@pytest.fixture
def operators(kubectl):
    kubectl.apply(CRDS)
    for crd in CRD_NAMES:
        kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    yield
    kubectl("delete", "crd", *CRD_NAMES, "--wait=true")


def test_pytorchjob_and_kueue_label_when_installed(alice, kubectl, operators):
    for n in ("ptj", "queued"):
        alice.api("DELETE", f"jobs/{n}")

    def served():  # discovery caches in the apiserver refresh within seconds
        r = alice.api("POST", "jobs", json={"name": "ptj", "code": "print(1)", "workers": 2, "queue": "team-a"})
        assert r.status_code == 201, r.text
        return r.json()
    job = eventually(served, 60, 2, what="PyTorchJob accepted")
    assert job["kind"] == "PyTorchJob"
    obj = kubectl.json("get", "pytorchjobs.kubeflow.org", "ptj", "-n", alice.namespace)
    assert obj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert obj["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
    assert alice.ok("GET", "jobs/ptj")["kind"] == "PyTorchJob"
    assert "ptj" in [j["name"] for j in alice.ok("GET", "jobs")["jobs"]]
    # one worker stays a plain Job, but still joins the queue
    alice.ok("POST", "jobs", 201, json={"name": "queued", "code": "print(1)", "queue": "team-a"})
    q = kubectl.json("get", "jobs", "queued", "-n", alice.namespace)
    assert q["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    alice.ok("DELETE", "jobs/ptj", 204)
    alice.ok("DELETE", "jobs/queued", 204)
    assert "ptj" not in kubectl("get", "pytorchjobs.kubeflow.org", "-n", alice.namespace, "-o", "name")


def test_models_deploy_as_kserve_inference_services_when_installed(alice, kubectl, operators):
    alice.execute("""
import os, numpy as np
from sklearn.linear_model import LogisticRegression
from skl2onnx import to_onnx
X = np.random.RandomState(0).rand(20, 3).astype(np.float32); y = (X[:, 0] > 0.5).astype(int)
os.makedirs("models/ks", exist_ok=True)
open("models/ks/model.onnx", "wb").write(to_onnx(LogisticRegression().fit(X, y), X[:1]).SerializeToString())
""")
    alice.api("DELETE", "services/ks")
    alice.api("DELETE", "models/ks")
    v = alice.ok("POST", "models", 201, json={"name": "ks", "path": "models/ks"})

    def deployed():
        r = alice.api("POST", "services", json={"name": "ks", "model": "ks"})
        assert r.status_code == 201, r.text
        return r.json()
    svc = eventually(deployed, 60, 2, what="InferenceService accepted")
    assert svc["kind"] == "InferenceService" and svc["version"] == 1
    isvc = kubectl.json("get", "inferenceservices.serving.kserve.io", "ks", "-n", alice.namespace)
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "onnx" and model["storageUri"] == v["artifact"]["uri"]
    assert model["protocolVersion"] == "v2"
    assert "ks" in [s["name"] for s in alice.ok("GET", "services")["services"]]
    assert kubectl("get", "deployments", "-n", alice.namespace, "-o", "name").count("deployment.apps/ks") == 0
    alice.ok("DELETE", "services/ks", 204)
    alice.ok("DELETE", "models/ks", 204)
