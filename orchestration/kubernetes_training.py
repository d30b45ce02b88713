"""Training on a Kubernetes cluster: the PyTorchJob the ``train`` asset submits, and the launcher
that follows it to the end.

The job is the pod of ``k8s/components/pytorchjob`` (the same image, command, volumes and
restart-and-resume policy), sized by the launcher's settings and tagged with the Dagster run, so
its MLflow run can be found afterwards. The launcher streams the master pod's log into Dagster's
log as the job runs, raises with the operator's reason and the last log lines when it fails, and
returns the training report the job wrote to the shared artifacts volume, checked against MLflow.
"""

import json
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import dagster as dg
from pydantic import Field

from orchestration.resources import TrainingLauncher
from vmas.config import Config

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"
CONTAINER = "pytorch"  # the name the Training Operator looks for
PARAMS_FILE = "/etc/vmas/params.yaml"
TRANSIENT = {429, 500, 502, 503, 504}  # API answers worth asking again
MAX_API_ERRORS = 10  # in a row


class TrainingJobSpec(dg.Config):
    """What changes from one cluster to the next: the image, where the pods run and how big they are.

    The one definition of these settings: the launcher's ``spec`` (so the Dagster UI shows and
    changes them), ``VMAS_K8S_<FIELD>`` in ``orchestration.definitions``, and, with a name and tags,
    the :class:`TrainingJob` that :func:`pytorchjob` renders.
    """

    image: str = Field(description="The vmas image the training pods run.")
    namespace: str = Field("vmas", description="The namespace of the PyTorchJob and its pods.")
    nodes: int = Field(1, description="Pods: one Master, then nodes - 1 Workers.")
    gpus_per_node: int = Field(1, description="GPUs each pod requests, and torchrun processes per pod.")
    cpu_per_node: str = Field("8", description="CPU each pod requests.")
    memory_per_node: str = Field("64Gi", description="Memory each pod requests and is limited to.")
    shm_size: str = Field("32Gi", description="Size of /dev/shm, where DataLoader workers hand batches over.")
    node_selector: dict[str, str] = Field({}, description="Labels of the nodes the pods may run on.")
    tolerate_gpu_taint: bool = Field(
        True, description="Tolerate nvidia.com/gpu:NoSchedule, the taint of GPU nodes in a shared cluster.")
    data_claim: str = Field("vmas-data", description="The PersistentVolumeClaim of the data, mounted at /data.")
    artifacts_claim: str = Field(
        "vmas-artifacts", description="The PersistentVolumeClaim of the artifacts, mounted at /artifacts.")
    params_config_map: str = Field("vmas-params", description=f"The ConfigMap of the profile, at {PARAMS_FILE}.")
    backoff_limit: int = Field(
        20, description="Pod restarts (each resumes from the newest checkpoint) before the job fails.")


class TrainingJob(TrainingJobSpec):
    """One job: the spec, plus the name it is submitted under and the tags of its MLflow run."""

    name: str = Field(description="The PyTorchJob's name; its master pod is <name>-master-0.")
    tags: dict[str, str] = Field({}, description="Tags on the MLflow run (`vmas train --tag`).")
    # The job on its own is the pod of k8s/components/pytorchjob, which tolerates no taint (dev-1gpu);
    # the launcher's spec, for a shared cluster, does.
    tolerate_gpu_taint: bool = Field(False, description="Tolerate nvidia.com/gpu:NoSchedule.")


def pytorchjob(job: TrainingJob) -> dict:
    """The PyTorchJob body: one pod per node (Master, then Workers), torchrun in each."""
    command = ["torchrun", "--module", "vmas.cli.main", "train", "--no-progress", f"--config={PARAMS_FILE}",
               f"--set=train.devices={job.gpus_per_node}", f"--set=train.num_nodes={job.nodes}",
               *(f"--tag={key}={value}" for key, value in sorted(job.tags.items()))]
    container = {
        "name": CONTAINER, "image": job.image, "command": command,
        "env": [{"name": "MLFLOW_HTTP_REQUEST_TIMEOUT", "value": "300"}, {"name": "NCCL_DEBUG", "value": "WARN"}],
        "resources": {"requests": {"cpu": job.cpu_per_node, "memory": job.memory_per_node,
                                   "nvidia.com/gpu": job.gpus_per_node},
                      "limits": {"memory": job.memory_per_node, "nvidia.com/gpu": job.gpus_per_node}},
        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True},
                         {"name": "artifacts", "mountPath": "/artifacts"},
                         {"name": "params", "mountPath": "/etc/vmas", "readOnly": True},
                         {"name": "dshm", "mountPath": "/dev/shm"}]}
    pod: dict[str, Any] = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
        "containers": [container],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": job.data_claim}},
                    {"name": "artifacts", "persistentVolumeClaim": {"claimName": job.artifacts_claim}},
                    {"name": "params", "configMap": {"name": job.params_config_map}},
                    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": job.shm_size}}]}
    if job.node_selector:
        pod["nodeSelector"] = dict(job.node_selector)
    if job.tolerate_gpu_taint:
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    replicas = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": {"spec": pod}}}
    if job.nodes > 1:
        replicas["Worker"] = {"replicas": job.nodes - 1, "restartPolicy": "OnFailure",
                              "template": {"spec": json.loads(json.dumps(pod))}}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PyTorchJob",
            "metadata": {"name": job.name, "namespace": job.namespace,
                         "labels": {"app.kubernetes.io/part-of": "vmas", "app.kubernetes.io/component": "training"}},
            "spec": {"nprocPerNode": str(job.gpus_per_node),
                     "runPolicy": {"backoffLimit": job.backoff_limit, "cleanPodPolicy": "None"},
                     "pytorchReplicaSpecs": replicas}}


def job_state(status: dict) -> tuple[str, str]:
    """``("Succeeded" | "Failed" | "Running" | "Pending", why)`` from a PyTorchJob's status conditions."""
    conditions = [c for c in status.get("conditions") or [] if c.get("status") == "True"]
    for kind in ("Failed", "Succeeded"):
        for c in conditions:
            if c.get("type") == kind:
                return kind, ": ".join(x for x in (c.get("reason"), c.get("message")) if x)
    running = any(c.get("type") in ("Running", "Restarting") for c in conditions)
    return ("Running" if running else "Pending"), ""


class TrainingJobFailed(Exception):
    """The cluster ran the training job and it failed, or did not finish in time."""


class PodLogFollower:
    """Streams one pod's container log, in a thread, into ``log``, once per container (re)start.

    ``stream(pod, namespace)`` yields log lines and ends when the container stops; a restarted
    container (its ``restartCount`` went up) is followed again from its start. The last lines are
    kept for the error message of a failed job.
    """

    def __init__(self, core, namespace: str, pod: str, log: Callable[[str], None],
                 stream: Callable[[str, str], Iterable[str]], keep: int = 50):
        self.core, self.namespace, self.pod, self.log, self.stream = core, namespace, pod, log, stream
        self.lines: queue.Queue[str] = queue.Queue()
        self.tail: deque[str] = deque(maxlen=keep)
        self.followed: set[tuple[str, int]] = set()
        self.thread: threading.Thread | None = None

    def poll(self) -> None:
        """Start following a container that started since the last poll; pass on the lines read so far."""
        if self.thread is None or not self.thread.is_alive():
            started = self._started_container()
            if started is not None and started not in self.followed:
                self.followed.add(started)
                self.thread = threading.Thread(target=self._read, daemon=True, name=f"logs-{self.pod}")
                self.thread.start()
        self._drain()

    def finish(self, timeout_s: float = 30.0) -> None:
        self.poll()
        if self.thread is not None:
            self.thread.join(timeout_s)
        self._drain()

    def _started_container(self) -> tuple[str, int] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            pod = self.core.read_namespaced_pod(self.pod, self.namespace)
        except ApiException as exc:  # 404: not created yet; anything else: try again at the next poll
            if exc.status != 404:
                self.lines.put(f"(could not read pod {self.pod}: {exc.status} {exc.reason})")
            return None
        for status in pod.status.container_statuses or []:
            if status.name == CONTAINER and (status.state.running or status.state.terminated):
                return pod.metadata.uid, status.restart_count
        return None

    def _read(self) -> None:
        try:
            for line in self.stream(self.pod, self.namespace):
                self.lines.put(line.rstrip("\n"))
        except Exception as exc:  # noqa: BLE001 - a broken log stream must not fail the job's follow-up
            self.lines.put(f"(log stream of {self.pod} ended: {exc})")

    def _drain(self) -> None:
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            self.tail.append(line)
            self.log(f"[{self.pod}] {line}")


@dataclass
class PyTorchJobRunner:
    """Submits a PyTorchJob and follows it to the end (the Kubernetes clients are passed in)."""

    custom: Any  # kubernetes.client.CustomObjectsApi
    core: Any  # kubernetes.client.CoreV1Api
    log: Callable[[str], None]
    stream: Callable[[str, str], Iterable[str]]
    poll_seconds: float = 30.0
    timeout_seconds: float = 7 * 24 * 3600.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def run(self, body: dict) -> dict:
        """Returns the job's final status; raises :class:`TrainingJobFailed` when it fails or times out."""
        from kubernetes.client.exceptions import ApiException

        name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
        nodes = sum(r["replicas"] for r in body["spec"]["pytorchReplicaSpecs"].values())
        try:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
            self.log(f"submitted PyTorchJob {namespace}/{name}: {nodes} node(s) x {body['spec']['nprocPerNode']} GPU(s)")
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.log(f"PyTorchJob {namespace}/{name} exists already (a retried Dagster step): following it")
        follower = PodLogFollower(self.core, namespace, f"{name}-master-0", self.log, self.stream)
        started, last, errors = self.clock(), None, 0
        while True:
            try:
                status = self.custom.get_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name)
                errors = 0
            except ApiException as exc:  # the API server restarting, throttling...: the job goes on meanwhile
                errors += 1
                if exc.status not in TRANSIENT or errors > MAX_API_ERRORS:
                    raise
                self.log(f"PyTorchJob {name}: the API answered {exc.status} {exc.reason}; retrying")
                self.sleep(self.poll_seconds)
                continue
            status = (status or {}).get("status") or {}
            state, why = job_state(status)
            if state != last:
                self.log(f"PyTorchJob {name}: {state}{f' ({why})' if why else ''}")
                last = state
            follower.poll()
            if state == "Succeeded":
                follower.finish()
                return status
            if state == "Failed":
                follower.finish()
                raise TrainingJobFailed(f"PyTorchJob {namespace}/{name} failed: {why or 'no reason given'}. "
                                        f"Last lines of {name}-master-0:\n" + "\n".join(follower.tail))
            if self.clock() - started > self.timeout_seconds:
                raise TrainingJobFailed(f"PyTorchJob {namespace}/{name} did not finish in {self.timeout_seconds:.0f} s "
                                        f"(still {state}); it is left running: delete it with `kubectl delete "
                                        f"pytorchjob -n {namespace} {name}`")
            self.sleep(self.poll_seconds)


def kubernetes_log_stream(core) -> Callable[[str, str], Iterable[str]]:
    """Lines of a pod's ``pytorch`` container, followed (kubernetes' own Watch over the log endpoint)."""
    from kubernetes import watch

    def stream(pod: str, namespace: str) -> Iterable[str]:
        return watch.Watch().stream(core.read_namespaced_pod_log, name=pod, namespace=namespace, container=CONTAINER,
                                    follow=True)

    return stream


class KubernetesTrainingLauncher(TrainingLauncher):
    """Trains on the cluster: a PyTorchJob of ``spec.nodes`` x ``spec.gpus_per_node`` GPUs in
    ``spec.namespace`` (the Kubeflow Training Operator must be installed), followed until it ends.

    The Dagster run must see the artifacts volume at ``paths.artifacts_dir`` (the Helm values in
    ``k8s/dagster`` mount it), where the job writes its report; the MLflow run is found by the
    Dagster run's tag and its metrics are added to the report.
    """

    spec: TrainingJobSpec
    poll_seconds: float = 30.0
    timeout_hours: float = 168.0
    in_cluster: bool = True  # the service account's credentials; False: ~/.kube/config

    def job(self, tags: dict[str, str]) -> TrainingJob:
        """The job for one Dagster run: this launcher's spec, named after the run and tagged with it."""
        return TrainingJob(name=f"vmas-train-{tags.get('dagster_run_id', 'manual')[:8]}", tags=dict(tags),
                           **self.spec.model_dump())

    def clients(self) -> tuple[Any, Any]:
        from kubernetes import client, config

        config.load_incluster_config() if self.in_cluster else config.load_kube_config()
        return client.CustomObjectsApi(), client.CoreV1Api()

    def log_stream(self, core) -> Callable[[str, str], Iterable[str]]:
        return kubernetes_log_stream(core)

    def launch(self, cfg: Config, tags: dict[str, str]) -> dict:
        custom, core = self.clients()
        logger = dg.get_dagster_logger()
        runner = PyTorchJobRunner(custom, core, logger.info, self.log_stream(core), self.poll_seconds,
                                  self.timeout_hours * 3600)
        runner.run(pytorchjob(self.job(tags)))
        return read_back(cfg, tags)


def read_back(cfg: Config, tags: dict[str, str]) -> dict:
    """The report the job wrote (``<artifacts>/train/report.json``), with its MLflow run: the run tagged
    with this Dagster run, and that run's latest metrics."""
    from mlflow import MlflowClient

    from vmas.tracking.runs import tracking_uri
    from vmas.layout import output_dir

    path = output_dir(cfg, "train") / "report.json"
    if not path.is_file():
        raise TrainingJobFailed(f"the training job succeeded but {path} does not exist: mount the artifacts volume in "
                                "the Dagster run at paths.artifacts_dir")
    report = json.loads(Path(path).read_text())
    client = MlflowClient(tracking_uri(cfg))
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    run_id = tags.get("dagster_run_id")
    runs = [] if experiment is None or not run_id else client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.dagster_run_id = '{run_id}' and tags.stage = 'train'",
        order_by=["attributes.start_time DESC"], max_results=1)
    if runs:
        report["run_id"] = runs[0].info.run_id
        report["final"] = {**report.get("final", {}), **runs[0].data.metrics}
    return report
