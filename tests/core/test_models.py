"""Pure builders of the model registry and serving objects (no cluster)."""
from __future__ import annotations

import pytest

from kubelab.core import models as M
from kubelab.core import resource_groups as rg
from kubelab.core.settings import WorkspaceSettings
from kubelab.core.workloads import Compute, WorkloadError

GROUPS = tuple(rg.parse([
    {"name": "cpu", "sizes": [{"name": "small", "cpu": "500m", "memory": "1Gi"}]},
    {"name": "gpu", "max_gpus": 2, "node_selector": {"gpu": "yes"},
     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
     "sizes": [{"name": "big", "cpu": "4", "memory": "16Gi"}]},
]))
S = WorkspaceSettings(user="alice", namespace="kubelab-alice", image="img:1", resource_groups=GROUPS)


def test_artifacts_live_under_the_users_models_prefix():
    assert M.models_prefix("alice", "iris", 3) == "users/alice/.kubelab/models/iris/3/"
    assert M.models_prefix("alice", "iris") == "users/alice/.kubelab/models/iris/"
    assert M.version_name("iris", 12) == "iris-v12"


def test_names_aliases_and_formats_are_checked():
    assert M.check_model_name("iris-classifier") == "iris-classifier"
    for bad in ("Iris", "x" * 51, "", "a_b"):
        with pytest.raises(WorkloadError):
            M.check_model_name(bad)
    assert M.check_alias("production") == "production"
    for bad in ("v2", "Prod", "-x", ""):
        with pytest.raises(WorkloadError):
            M.check_alias(bad)
    with pytest.raises(WorkloadError, match="supported: sklearn"):
        M.check_format("pickle")


def test_resolve_version_by_number_v_prefix_or_alias():
    model = {"metadata": {"name": "iris"}, "spec": {"aliases": {"production": 2}}}
    assert M.resolve_version(model, 3) == 3
    assert M.resolve_version(model, "v4") == 4
    assert M.resolve_version(model, "5") == 5
    assert M.resolve_version(model, "production") == 2
    with pytest.raises(WorkloadError, match="no version or alias 'staging'"):
        M.resolve_version(model, "staging")


def test_version_object_records_verdict_lineage_and_artifact():
    rec = M.VersionRecord(model="iris", version=2, format="onnx", artifact_uri="s3://b/users/alice/.kubelab/models/iris/2/",
                          files=("model.onnx",), bytes=10, sha256="ab", verdict={"status": "valid"},
                          signature={"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]},
                          metrics={"accuracy": 0.9}, lineage={"dataset": "iris", "job": ""}, tags=("demo",))
    obj = M.version_object(S, rec, owner_uid="uid-1")
    assert obj["metadata"]["name"] == "iris-v2" and obj["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert obj["metadata"]["labels"][M.MODEL_LABEL] == "iris" and obj["metadata"]["labels"][M.VERSION_LABEL] == "2"
    assert obj["spec"]["lineage"] == {"dataset": "iris"}
    assert obj["status"]["validation"]["status"] == "valid"
    view = M.version_view(obj)
    assert view["version"] == 2 and view["signature"]["inputs"][0]["name"] == "x"


def test_serving_deployment_copies_the_version_without_credentials_and_rolls_without_loss():
    spec = M.ServingSpec(name="iris", model="iris", version=2, format="onnx",
                         artifact_uri="s3://b/users/alice/.kubelab/models/iris/2/", sha256="ab" * 32,
                         compute=Compute(GROUPS[0], GROUPS[0].sizes[0], 0), replicas=2, alias="production")
    deploy, svc = M.serving_objects(S, spec, "serve:1")
    pod = deploy["spec"]["template"]["spec"]
    fetch = pod["initContainers"][0]
    assert fetch["command"][3:] == [f"{M.HOME_RO_DIR}/.kubelab/models/iris/2", M.MODEL_DIR, "--sha256", "ab" * 32]
    # the home subPath read-only (what the admission policy allows), and no S3 credentials anywhere
    assert {"name": "kubelab-s3", "mountPath": M.HOME_RO_DIR, "readOnly": True,
            "subPath": "users/alice"} in fetch["volumeMounts"]
    assert {"name": "kubelab-s3", "hostPath": {"path": S.s3_mount_host_path, "type": "Directory"}} in pod["volumes"]
    assert "secretRef" not in str(deploy) and "AWS_" not in str(deploy)
    server = pod["containers"][0]
    assert server["command"][:3] == ["python", "-m", M.SERVING_MODULE] and "onnx" in server["command"]
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/models/iris/ready"
    assert server["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert deploy["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert pod["automountServiceAccountToken"] is False
    assert svc["spec"]["selector"] == {M.SERVICE_LABEL: "iris"} and svc["spec"]["ports"][0]["targetPort"] == 8080
    assert M.serving_record(deploy) == {"model": "iris", "version": 2, "alias": "production", "format": "onnx",
                                        "resource_group": "cpu", "size": "small", "gpus": 0, "replicas": 2}


@pytest.mark.parametrize("uri", ["s3://b/users/bob/.kubelab/models/iris/2/", "s3://b/users/alice/.kubelab/models/../../x/",
                                 "s3://b/users/alice/models/iris/2/", "s3://b/users/alice/.kubelab/models/iris/",
                                 "s3://b/users/alice/.kubelab/models/iris/2/x/", "/etc/passwd"])
def test_only_the_users_own_registered_versions_can_be_served(uri):
    spec = M.ServingSpec(name="iris", model="iris", version=2, format="onnx", artifact_uri=uri,
                         compute=Compute(GROUPS[0], GROUPS[0].sizes[0], 0))
    with pytest.raises(WorkloadError, match="not one of your registered model versions"):
        M.serving_objects(S, spec, "serve:1")


def test_gpu_serving_and_kserve_inference_service():
    spec = M.ServingSpec(name="big", model="llm", version=1, format="sklearn",
                         artifact_uri="s3://b/users/alice/.kubelab/models/llm/1/",
                         compute=Compute(GROUPS[1], GROUPS[1].sizes[0], 1))
    deploy, _ = M.serving_objects(S, spec, "serve:1")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"gpu": "yes"} and pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    isvc = M.inference_service(S, spec)
    assert isvc["kind"] == "InferenceService"
    pred = isvc["spec"]["predictor"]
    assert pred["model"]["modelFormat"]["name"] == "sklearn" and pred["model"]["storageUri"] == "s3://b/users/alice/.kubelab/models/llm/1/"
    assert pred["model"]["protocolVersion"] == "v2" and pred["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_v2_request_from_rows_and_signature():
    sig = {"inputs": [{"name": "float_input", "datatype": "FP32", "shape": [-1, 4]}]}
    req = M.v2_request(sig, [[1, 2, 3, 4], [5, 6, 7, 8]])
    assert req == {"inputs": [{"name": "float_input", "datatype": "FP32", "shape": [2, 4],
                               "data": [1, 2, 3, 4, 5, 6, 7, 8]}]}
    assert M.v2_request(None, [1, 2])["inputs"][0]["shape"] == [1, 2]
    for bad in ([], [[1, 2], [3]], "x"):
        with pytest.raises(WorkloadError):
            M.v2_request(sig, bad)
