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
OVERLAYS = ["dev-1gpu", "multinode", "multinode-indexed"]
PLATFORM = ["ConfigMap/vmas-params", "Deployment/mlflow", "PersistentVolumeClaim/mlflow-artifacts",
            "PersistentVolumeClaim/vmas-artifacts", "PersistentVolumeClaim/vmas-data", "Role/vmas-training-launcher",
            "RoleBinding/vmas-training-launcher", "Secret/postgres", "Service/mlflow", "Service/postgres",
            "ServiceAccount/dagster", "StatefulSet/postgres"]
TRAINING = {"dev-1gpu": ["PyTorchJob/vmas-train"], "multinode": ["PyTorchJob/vmas-train"],
            "multinode-indexed": ["Job/vmas-train", "Service/vmas-train"]}
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
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects if o["kind"] != "Namespace")
    assert kinds == sorted(PLATFORM + TRAINING[overlay])
    [namespace] = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
    assert {o["metadata"].get("namespace", namespace) for o in objects} == {namespace}
    for obj in objects:
        if obj["kind"] == "PyTorchJob":
            assert pytorchjob_errors(obj) == []
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    images = {c["image"] for o in objects for c in _containers(o)}
    assert images == {"registry.example.com/vmas:latest", "postgres:16.6"}


def _containers(obj: dict) -> list[dict]:
    if obj["kind"] == "PyTorchJob":
        return [c for r in obj["spec"]["pytorchReplicaSpecs"].values() for c in r["template"]["spec"]["containers"]]
    return obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])


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


def test_the_dagster_helm_values_run_this_code_location_with_the_kubernetes_launcher(repo):
    values = yaml.safe_load((repo / "k8s" / "dagster" / "values.yaml").read_text())
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "orchestration.definitions"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["VMAS_TRAINING_LAUNCHER"] == "kubernetes" and env["VMAS_CONFIG"] == "/etc/vmas/params.yaml"
    assert values["global"]["serviceAccountName"] == "dagster" and values["runLauncher"]["type"] == "K8sRunLauncher"
    claims = {v["persistentVolumeClaim"]["claimName"] for v in deployment["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"vmas-data", "vmas-artifacts"}


def test_the_image_installs_the_lock_like_make_install_and_runs_unprivileged(repo):
    dockerfile = (repo / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM nvidia/cuda:" in dockerfile
    assert "scripts/install.sh /opt/venv --deps-only" in dockerfile and "COPY requirements.lock" in dockerfile
    assert "scripts/install.sh $(VENV) --editable" in (repo / "Makefile").read_text()
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users == ["vmas"]


def test_without_the_operator_an_indexed_job_runs_torchrun_on_every_node(repo):
    objects = render(repo, "multinode-indexed")
    [job] = [o for o in objects if o["kind"] == "Job"]
    [service] = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == job["metadata"]["name"]]
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["containers"][0]["env"]}
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == int(env["PET_NNODES"]) == 4
    assert env["PET_NODE_RANK"] == {"fieldRef": {"fieldPath":
                                                 "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    # node 0 is reachable by name through the headless Service the pods are a subdomain of
    assert service["spec"]["clusterIP"] == "None" and pod["subdomain"] == service["metadata"]["name"]
    assert env["PET_MASTER_ADDR"] == f"{job['metadata']['name']}-0.{service['metadata']['name']}"
    assert service["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    command = pod["containers"][0]["command"]
    assert "--set=train.num_nodes=4" in command and f"--set=train.devices={env['PET_NPROC_PER_NODE']}" in command
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == int(env["PET_NPROC_PER_NODE"]) == 8


# --------------------------------------------------------------------------- the Kubernetes launcher


def _job(repo, overlay: str) -> dict:
    [job] = [o for o in render(repo, overlay) if o["kind"] == "PyTorchJob"]
    return job


@pytest.mark.parametrize("overlay, size", [
    ("dev-1gpu", {}),
    ("multinode", {"nodes": 4, "gpus_per_node": 8, "cpu_per_node": "64", "memory_per_node": "800Gi",
                   "shm_size": "256Gi", "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                   "tolerate_gpu_taint": True})])
def test_the_launcher_submits_exactly_the_manifests_job(repo, overlay, size):
    """What Dagster submits is the PyTorchJob of k8s/ (same pod, command, volumes, restart policy)."""
    from orchestration.kubernetes_training import TrainingJob, pytorchjob

    body = pytorchjob(TrainingJob(name="vmas-train", image="registry.example.com/vmas:latest", **size))
    assert body["spec"] == _job(repo, overlay)["spec"]
    assert pytorchjob_errors(body) == []


def test_the_launchers_job_carries_the_run_tags_and_validates(repo):
    from orchestration.definitions import launcher_from_env

    launcher = launcher_from_env({"VMAS_TRAINING_LAUNCHER": "kubernetes", "VMAS_K8S_IMAGE": "r.example/vmas:1",
                                  "VMAS_K8S_NODES": "2", "VMAS_K8S_GPUS_PER_NODE": "8",
                                  "VMAS_K8S_NODE_SELECTOR": '{"pool": "h100"}'})
    from orchestration.kubernetes_training import pytorchjob

    body = pytorchjob(launcher.job({"dagster_run_id": "0123456789abcdef", "orchestrator": "dagster"}))
    assert body["metadata"]["name"] == "vmas-train-01234567" and body["metadata"]["namespace"] == "vmas"
    master, worker = body["spec"]["pytorchReplicaSpecs"]["Master"], body["spec"]["pytorchReplicaSpecs"]["Worker"]
    assert (master["replicas"], worker["replicas"], body["spec"]["nprocPerNode"]) == (1, 1, "8")
    container = master["template"]["spec"]["containers"][0]
    assert container["image"] == "r.example/vmas:1" and container["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert container["command"][-2:] == ["--tag=dagster_run_id=0123456789abcdef", "--tag=orchestrator=dagster"]
    assert "--set=train.num_nodes=2" in container["command"] and master["template"]["spec"]["nodeSelector"] == {
        "pool": "h100"}
    assert pytorchjob_errors(body) == []
    with pytest.raises(ValueError, match="needs VMAS_K8S_IMAGE"):
        launcher_from_env({"VMAS_TRAINING_LAUNCHER": "kubernetes"})
    with pytest.raises(ValueError, match="expected local or kubernetes"):
        launcher_from_env({"VMAS_TRAINING_LAUNCHER": "slurm"})


class FakeCluster:
    """The Kubernetes API as the launcher sees it: custom objects (the PyTorchJob) and pods, returning the
    client's own model objects; statuses and pod states play out one poll at a time."""

    def __init__(self, statuses: list[dict], pods: list, logs: list[list[str]]):
        self.statuses, self.pods, self.logs = statuses, pods, logs
        self.created: list[dict] = []
        self.streams: list[str] = []

    # CustomObjectsApi
    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        from kubernetes.client.exceptions import ApiException

        assert (group, version, plural) == ("kubeflow.org", "v1", "pytorchjobs") and namespace == body["metadata"][
            "namespace"]
        if any(b["metadata"]["name"] == body["metadata"]["name"] for b in self.created):
            raise ApiException(status=409, reason="AlreadyExists")
        self.created.append(body)
        return body

    def get_namespaced_custom_object_status(self, group, version, namespace, plural, name):
        from kubernetes.client.exceptions import ApiException

        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if isinstance(status, int):
            raise ApiException(status=status, reason="Service Unavailable")
        return {"metadata": {"name": name}, "status": status}

    # CoreV1Api
    def read_namespaced_pod(self, name, namespace):
        from kubernetes.client.exceptions import ApiException

        pod = self.pods.pop(0) if len(self.pods) > 1 else self.pods[0]
        if pod is None:
            raise ApiException(status=404, reason="Not Found")
        return pod

    def stream(self, pod: str, namespace: str):
        self.streams.append(pod)
        yield from self.logs.pop(0)


def _pod(restarts: int = 0, running: bool = True):
    from kubernetes.client import (V1ContainerState, V1ContainerStateRunning, V1ContainerStateWaiting,
                                   V1ContainerStatus, V1ObjectMeta, V1Pod, V1PodStatus)

    state = V1ContainerState(running=V1ContainerStateRunning()) if running else \
        V1ContainerState(waiting=V1ContainerStateWaiting(reason="ContainerCreating"))
    status = V1ContainerStatus(name="pytorch", image="vmas", image_id="", ready=running, restart_count=restarts,
                               state=state)
    return V1Pod(metadata=V1ObjectMeta(name="vmas-train-run1-master-0", uid="pod-1"),
                 status=V1PodStatus(container_statuses=[status]))


RUNNING = {"conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}]}
SUCCEEDED = {"conditions": [{"type": "Running", "status": "False"},
                            {"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded"}]}
FAILED = {"conditions": [{"type": "Running", "status": "False"},
                         {"type": "Failed", "status": "True", "reason": "PyTorchJobFailed",
                          "message": "PyTorchJob vmas-train-run1 is failed because 1 Master replica(s) failed."}]}


def _runner(cluster, logs: list[str], timeout: float = 3600.0):
    from orchestration.kubernetes_training import PyTorchJobRunner

    clock = iter(range(0, 10**9, 60))
    return PyTorchJobRunner(cluster, cluster, logs.append, cluster.stream, poll_seconds=60, timeout_seconds=timeout,
                            sleep=lambda s: None, clock=lambda: float(next(clock)))


def _body(name="vmas-train-run1"):
    from orchestration.kubernetes_training import TrainingJob, pytorchjob

    return pytorchjob(TrainingJob(name=name, image="vmas:1"))


def test_the_runner_streams_the_master_log_and_returns_on_success():
    cluster = FakeCluster([{}, 503, RUNNING, RUNNING, SUCCEEDED], [None, _pod(running=False), _pod(), _pod()],
                          [["step 1 loss 8.2", "step 2 loss 7.9"]])
    logs: list[str] = []
    status = _runner(cluster, logs).run(_body())
    assert status == SUCCEEDED and cluster.created == [_body()]
    assert cluster.streams == ["vmas-train-run1-master-0"]  # followed once, when its container ran
    assert "[vmas-train-run1-master-0] step 1 loss 8.2" in logs and "[vmas-train-run1-master-0] step 2 loss 7.9" in logs
    assert [line for line in logs if line.startswith("PyTorchJob")] == [
        "PyTorchJob vmas-train-run1: Pending",
        "PyTorchJob vmas-train-run1: the API answered 503 Service Unavailable; retrying",
        "PyTorchJob vmas-train-run1: Running",
        "PyTorchJob vmas-train-run1: Succeeded (PyTorchJobSucceeded)"]


def test_a_restarted_container_is_followed_again_and_a_failure_says_why():
    from orchestration.kubernetes_training import TrainingJobFailed

    cluster = FakeCluster([RUNNING, RUNNING, RUNNING, FAILED], [_pod(0), _pod(0), _pod(1), _pod(1)],
                          [["resuming from step-0"], ["resuming from step-200", "CUDA error: out of memory"]])
    logs: list[str] = []
    with pytest.raises(TrainingJobFailed) as failure:
        _runner(cluster, logs).run(_body())
    assert cluster.streams == ["vmas-train-run1-master-0"] * 2  # once per container start
    message = str(failure.value)
    assert "1 Master replica(s) failed" in message and "CUDA error: out of memory" in message.splitlines()[-1]


def test_a_retried_step_follows_the_job_it_already_submitted():
    cluster = FakeCluster([SUCCEEDED], [_pod()], [["done"], ["done"]])
    logs: list[str] = []
    _runner(cluster, logs).run(_body())
    _runner(cluster, logs).run(_body())  # same Dagster run, same job name: 409 from the API, then followed
    assert len(cluster.created) == 1 and any("exists already" in line for line in logs)


def test_a_job_that_never_ends_times_out_and_is_left_for_a_person():
    from orchestration.kubernetes_training import TrainingJobFailed

    cluster = FakeCluster([RUNNING], [_pod()], [[]])
    with pytest.raises(TrainingJobFailed, match="did not finish in 600 s .*kubectl delete pytorchjob -n vmas"):
        _runner(cluster, [], timeout=600).run(_body())


def test_the_launcher_returns_the_jobs_report_with_its_mlflow_run(repo, tmp_path):
    """End to end with a fake cluster: the report the job wrote, and the MLflow run found by the run's tag."""
    import mlflow

    from orchestration.kubernetes_training import KubernetesTrainingLauncher
    from vmas.config import load_config
    from vmas.tracking.runs import tracking_uri

    cfg = load_config(repo / "configs" / "demo.yaml", overrides=[f"paths.artifacts_dir={tmp_path}"])
    cluster = FakeCluster([RUNNING, SUCCEEDED], [_pod()], [["done"]])

    class OnFakeCluster(KubernetesTrainingLauncher):
        def clients(self):
            # what the job does on the cluster: an MLflow run tagged with the Dagster run, and the report
            mlflow.set_tracking_uri(tracking_uri(cfg))
            mlflow.set_experiment(cfg.tracking.experiment)
            with mlflow.start_run(tags={"stage": "train", "dagster_run_id": "run1-abcdef"}) as run:
                mlflow.log_metric("val/ce", 6.5, step=300)
            (tmp_path / "train").mkdir()
            (tmp_path / "train" / "report.json").write_text(json.dumps({"steps": 300, "clips": 8, "seconds": 9.0,
                                                                        "final": {"train/loss": 6.0}}))
            self._run_id = run.info.run_id
            return cluster, cluster

        def log_stream(self, core):
            return cluster.stream

    launcher = OnFakeCluster(spec={"image": "vmas:1"}, poll_seconds=0.0)
    report = launcher.launch(cfg, {"dagster_run_id": "run1-abcdef"})
    assert report["run_id"] == launcher._run_id and report["final"] == {"train/loss": 6.0, "val/ce": 6.5}
    assert cluster.created[0]["metadata"]["name"] == "vmas-train-run1-abc"
