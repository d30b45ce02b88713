"""The cluster manifests, checked offline (no cluster here): every overlay renders with kustomize,
every object passes kubernetes-validate in strict mode, the PyTorchJob passes its CRD schema (and
its pod templates the Pod schema), and the pieces agree with each other and with the repository."""

import json
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

K8S_VERSION = "1.33"
OVERLAYS = ["dev-1gpu", "multinode"]
CRD = Path(__file__).parent / "fixtures" / "kubeflow" / "pytorchjobs-crd.condensed.yaml"

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (Debian: kubectl)")


def render(repo: Path, overlay: str) -> list[dict]:
    result = subprocess.run(["kubectl", "kustomize", str(repo / "k8s" / "overlays" / overlay)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _openapi_to_jsonschema(node):
    """A CRD's OpenAPI v3 schema as strict JSON Schema: unknown fields refused, like the API server's
    strict field validation (objects that preserve unknown fields stay open)."""
    if isinstance(node, list):
        return [_openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: ({n: _openapi_to_jsonschema(s) for n, s in v.items()} if k == "properties" else
               v if k in ("default", "enum", "required") else _openapi_to_jsonschema(v)) for k, v in node.items()}
    if "properties" in out and "additionalProperties" not in out and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def pytorchjob_errors(job: dict) -> list[str]:
    from referencing import Registry, Resource

    crd = yaml.safe_load(CRD.read_text())
    schema = _openapi_to_jsonschema(next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
                                    ["schema"]["openAPIV3Schema"])
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(job)]
    folder = resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{K8S_VERSION}.0-local-strict"
    registry = Resource.from_contents(json.loads((folder / "_definitions.json").read_text())) @ Registry()
    pod = jsonschema.Draft202012Validator(
        {"$ref": "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.api.core.v1.PodSpec"}, registry=registry)
    for kind, replica in job["spec"]["pytorchReplicaSpecs"].items():
        if kind not in ("Master", "Worker"):
            errors.append(f"{kind}: replica types are Master and Worker")
        errors += [f"{kind}/template/spec/{'/'.join(map(str, e.absolute_path))}: {e.message}"
                   for e in pod.iter_errors(replica["template"]["spec"])]
    return errors


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_validates_strictly(repo, overlay):
    import kubernetes_validate

    objects = render(repo, overlay)
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    assert kinds == ["ConfigMap/vmas-params", "Deployment/mlflow", "Namespace/" + objects[0]["metadata"]["name"],
                     "PersistentVolumeClaim/mlflow-store", "PersistentVolumeClaim/vmas-artifacts",
                     "PersistentVolumeClaim/vmas-data", "PyTorchJob/vmas-train", "Service/mlflow"]
    for obj in objects:
        if obj["kind"] == "PyTorchJob":
            assert pytorchjob_errors(obj) == []
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        assert "registry.example.com/vmas:" in json.dumps(obj) or obj["kind"] in (
            "Namespace", "ConfigMap", "PersistentVolumeClaim", "Service")


def test_the_crd_check_catches_what_the_api_server_would_refuse(repo):
    [job] = [o for o in render(repo, "dev-1gpu") if o["kind"] == "PyTorchJob"]
    job["spec"]["nprocPerNode"] = 8  # a string in the CRD
    master = job["spec"]["pytorchReplicaSpecs"]["Master"]
    master["replica"] = 2  # unknown field
    master["template"]["spec"]["containers"][0]["resourcez"] = {}  # unknown in the Pod spec
    errors = pytorchjob_errors(job)
    assert len(errors) == 3, errors


def test_multinode_is_four_nodes_of_eight_gpus_running_the_same_pod(repo):
    [job] = [o for o in render(repo, "multinode") if o["kind"] == "PyTorchJob"]
    spec = job["spec"]
    master, worker = spec["pytorchReplicaSpecs"]["Master"], spec["pytorchReplicaSpecs"]["Worker"]
    nodes = master["replicas"] + worker["replicas"]
    assert (nodes, spec["nprocPerNode"]) == (4, "8")
    assert master["template"] == worker["template"]
    container = master["template"]["spec"]["containers"][0]
    assert container["name"] == "pytorch" and container["command"][:3] == ["torchrun", "--module", "vmas.cli.main"]
    assert f"--set=train.num_nodes={nodes}" in container["command"]
    assert f"--set=train.devices={spec['nprocPerNode']}" in container["command"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == int(spec["nprocPerNode"])
    assert master["template"]["spec"]["tolerations"] and master["template"]["spec"]["nodeSelector"]
    assert master["restartPolicy"] == "OnFailure" and spec["runPolicy"]["backoffLimit"] > 0
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"/data", "/artifacts", "/etc/vmas", "/dev/shm"}


def test_the_cluster_profile_is_the_paper_profile_on_the_volumes(repo):
    from vmas.config import load_config

    cluster = load_config(repo / "k8s" / "base" / "params.yaml")
    expected = load_config(repo / "configs" / "paper.yaml", overrides=[
        "paths.data_dir=/data", "paths.artifacts_dir=/artifacts", "tracking.uri=http://mlflow:5000",
        "train.strategy=ddp"])
    assert cluster == expected


def test_the_image_installs_the_lock_like_make_install_and_runs_unprivileged(repo):
    dockerfile = (repo / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM nvidia/cuda:" in dockerfile
    assert "scripts/install.sh /opt/venv --deps-only" in dockerfile and "COPY requirements.lock" in dockerfile
    assert "scripts/install.sh $(VENV) --editable" in (repo / "Makefile").read_text()
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users == ["vmas"]
