"""Curation on a Kubernetes cluster: one pod per step, sized and placed by the stage's needs.

With ``VMAS_EXECUTOR=k8s`` every run executes its steps with ``dagster_k8s.k8s_job_executor``:
each step (asset) is a Kubernetes Job of the run's image, with the run's volumes and environment.
The curation assets carry a ``dagster-k8s/config`` op tag (:func:`step_tags`) that sizes that pod
and places it: the GPU stages (``remove_vocals``, ``train_codec``, ``tokenize`` by default) on a
GPU node with one ``nvidia.com/gpu``, the others on CPU nodes. The tag is read only by the
Kubernetes executor; locally (``dagster dev``, ``materialize``) it changes nothing.

Which stages are GPU stages, and why: ``remove_vocals`` runs Demucs on every kept video;
``train_codec`` trains the codec for ``codec.train.max_steps`` (200k in the paper profile, far too
slow on CPU; nothing to do, a short GPU pod, when ``codec.pretrained`` is set); ``tokenize`` runs the
codec's encoder on every clip of the dataset. All three use ``cuda`` when it is visible
(``device: auto``). The others (ingest, probe, filter_static, beats...) are ffmpeg, NumPy and OpenCV
work over ``VMAS_WORKERS`` processes. ``gpu_stages`` changes the choice.

The settings are :class:`CurationPods`, read from ``VMAS_K8S_CURATION_<FIELD>`` (text fields as
they are, the others as JSON), like the training launcher's ``VMAS_K8S_<FIELD>``.
"""

import json
import os
import re
from decimal import Decimal
from typing import Any, Mapping

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from vmas.curation import STAGES

ENV_PREFIX = "VMAS_K8S_CURATION_"
EXECUTOR_ENV = "VMAS_EXECUTOR"
MAX_CONCURRENT_ENV = "VMAS_K8S_MAX_CONCURRENT_STEPS"
DEFAULT_MAX_CONCURRENT_STEPS = 4
K8S_CONFIG_TAG = "dagster-k8s/config"  # what dagster_k8s reads (dagster_k8s.job.USER_DEFINED_K8S_CONFIG_KEY)
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}

_TOLERATION_FIELDS = {"key", "operator", "value", "effect", "tolerationSeconds"}
_TAINT_EFFECTS = {"", "NoSchedule", "PreferNoSchedule", "NoExecute"}
_QUANTITY = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
                       r"(?:(?P<exponent>[eE][+-]?[0-9]+)|(?P<suffix>[KMGTPE]i|[numkMGTPE]))?")
_SUFFIX = {"": 1, "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": 10**3, "M": 10**6,
           "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
           "Pi": 2**50, "Ei": 2**60}


def quantity(text: str) -> Decimal:
    """A Kubernetes quantity (``500m``, ``8``, ``16Gi``, ``1e3``) as a number; ValueError if it is not one."""
    match = _QUANTITY.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (like 500m, 8, 16Gi)")
    number = Decimal(match["number"])
    if match["exponent"]:
        return number * Decimal(10) ** int(match["exponent"][1:])
    return number * _SUFFIX[match["suffix"] or ""]


class CurationPods(BaseModel):
    """The pods of the curation steps: CPU stages' and GPU stages' resources, nodes and tolerations.

    Defaults suit a GKE- or EKS-like cluster: CPU nodes with 16 vCPUs or more; GPU nodes labelled
    ``nvidia.com/gpu.present=true`` by NVIDIA GPU feature discovery (the GPU operator) and tainted
    ``nvidia.com/gpu:NoSchedule`` (GKE taints its GPU nodes so; on EKS it is the usual practice), so that
    CPU steps, which do not tolerate the taint, stay off them. A GPU pod (6 CPUs, 24Gi) fits a
    one-GPU node of 8 vCPUs and 32 GB (g2-standard-8, g5.2xlarge). An empty limit sets none: CPU
    limits throttle without protecting anything, so there are none by default.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)  # a default limit below a set request

    gpu_stages: list[str] = Field(["remove_vocals", "train_codec", "tokenize"],
                                  description="Stages whose pods get a GPU; the others are CPU stages.")
    cpu: str = Field("8", description="CPU a CPU stage's pod requests (VMAS_WORKERS processes share it).")
    cpu_limit: str = Field("", description="CPU limit of a CPU stage's pod ('': none).")
    memory: str = Field("16Gi", description="Memory a CPU stage's pod requests.")
    memory_limit: str = Field("32Gi", description="Memory limit of a CPU stage's pod ('': none).")
    node_selector: dict[str, str] = Field({}, description="Labels of the nodes CPU stages run on ({}: any untainted).")
    tolerations: list[dict[str, Any]] = Field([], description="Tolerations of CPU stages' pods.")
    network_stages: list[str] = Field(["download"], description="CPU stages that mostly wait on the network "
                                                                 "(threads, not processes): a small pod.")
    network_cpu: str = Field("2", description="CPU a network stage's pod requests.")
    network_memory: str = Field("2Gi", description="Memory a network stage's pod requests.")
    network_memory_limit: str = Field("4Gi", description="Memory limit of a network stage's pod ('': none).")
    gpus: int = Field(1, ge=1, description=f"{GPU_RESOURCE} a GPU stage's pod requests (and is limited to).")
    gpu_cpu: str = Field("6", description="CPU a GPU stage's pod requests.")
    gpu_cpu_limit: str = Field("", description="CPU limit of a GPU stage's pod ('': none).")
    gpu_memory: str = Field("20Gi", description="Memory a GPU stage's pod requests.")
    gpu_memory_limit: str = Field("24Gi", description="Memory limit of a GPU stage's pod ('': none).")
    gpu_node_selector: dict[str, str] = Field({"nvidia.com/gpu.present": "true"},
                                              description="Labels of the GPU nodes (on GKE without the GPU operator: "
                                                          '{"cloud.google.com/gke-accelerator": "nvidia-l4"}).')
    gpu_tolerations: list[dict[str, Any]] = Field([GPU_TOLERATION], description="Tolerations of GPU stages' pods.")

    @field_validator("gpu_stages", "network_stages")
    @classmethod
    def _known_stages(cls, stages: list[str]) -> list[str]:
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; the stages are {list(STAGES)}")
        return stages

    @field_validator("tolerations", "gpu_tolerations")
    @classmethod
    def _tolerations(cls, tolerations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for t in tolerations:  # checked here, so that a typo stops the code location, not a run's step
            unknown = set(t) - _TOLERATION_FIELDS
            if unknown:
                raise ValueError(f"{t}: unknown field(s) {sorted(unknown)}; "
                                 f"a toleration has {sorted(_TOLERATION_FIELDS)}")
            if t.get("operator", "Equal") not in ("Equal", "Exists") or t.get("effect", "") not in _TAINT_EFFECTS:
                raise ValueError(f"{t}: operator is Equal or Exists, effect one of {sorted(_TAINT_EFFECTS)}")
        return tolerations

    @field_validator("cpu", "memory", "gpu_cpu", "gpu_memory", "network_cpu", "network_memory")
    @classmethod
    def _request(cls, value: str) -> str:
        quantity(value)
        return value

    @field_validator("cpu_limit", "memory_limit", "gpu_cpu_limit", "gpu_memory_limit", "network_memory_limit")
    @classmethod
    def _limit(cls, value: str, info: ValidationInfo) -> str:
        """A quantity, or '' (no limit), at least the request (each limit's field follows its request's)."""
        if value:
            request = info.field_name.removesuffix("_limit")
            if quantity(value) < quantity(info.data.get(request) or "0"):
                raise ValueError(f"{value} is below the request, {request} {info.data[request]}")
        return value

    def is_gpu_stage(self, stage: str) -> bool:
        return stage in self.gpu_stages

    def k8s_config(self, stage: str) -> dict:
        """The ``dagster-k8s/config`` of a stage's step pod (``UserDefinedDagsterK8sConfig``'s keys)."""
        gpu = self.is_gpu_stage(stage)
        if gpu:
            cpu, cpu_limit, memory, memory_limit = self.gpu_cpu, self.gpu_cpu_limit, self.gpu_memory, self.gpu_memory_limit
        elif stage in self.network_stages:  # downloads: threads waiting on the network, not 8 busy cores
            cpu, cpu_limit, memory, memory_limit = self.network_cpu, "", self.network_memory, self.network_memory_limit
        else:
            cpu, cpu_limit, memory, memory_limit = self.cpu, self.cpu_limit, self.memory, self.memory_limit
        requests = {"cpu": cpu, "memory": memory}
        limits = {k: v for k, v in (("cpu", cpu_limit), ("memory", memory_limit)) if v}
        if gpu:  # an extended resource: its request must equal its limit
            requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(self.gpus)
        pod: dict[str, Any] = {}
        node_selector, tolerations = ((self.gpu_node_selector, self.gpu_tolerations) if gpu
                                      else (self.node_selector, self.tolerations))
        if node_selector:
            pod["node_selector"] = dict(node_selector)
        if tolerations:
            pod["tolerations"] = [dict(t) for t in tolerations]
        return {"container_config": {"resources": {"requests": requests, "limits": limits}},
                "pod_spec_config": pod}


def _variable(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def curation_pods_from_env(env: Mapping[str, str]) -> CurationPods:
    """:class:`CurationPods` with each field that ``VMAS_K8S_CURATION_<FIELD>`` sets (unset or empty: the default).

    Raises ValueError naming the variable when a value is not JSON or not valid for its field.
    """
    values: dict[str, Any] = {}
    for name, field in CurationPods.model_fields.items():
        raw = env.get(_variable(name))
        if not raw:
            continue
        if field.annotation is str:
            values[name] = raw
            continue
        try:
            values[name] = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{_variable(name)}={raw!r} is not JSON ({exc.msg}); it sets {name}: "
                             f"{field.description} Default: {json.dumps(field.default)}") from None
    known = {_variable(n) for n in CurationPods.model_fields}
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known)
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: no such setting; the curation pod settings are {sorted(known)}")
    try:
        return CurationPods(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            problems.append(f"{_variable(str(error['loc'][0]))}: {error['msg']}")
        raise ValueError("bad curation pod settings: " + "; ".join(problems)) from None


def step_tags(stage: str, pods: CurationPods | None = None) -> dict[str, Any]:
    """The op tags of a curation stage's asset: its pod's ``dagster-k8s/config`` (read by the Kubernetes
    executor only). ``pods`` None: :func:`curation_pods_from_env` on this process's environment."""
    pods = pods if pods is not None else curation_pods_from_env(os.environ)
    return {K8S_CONFIG_TAG: pods.k8s_config(stage)}


def executor_from_env(env: Mapping[str, str]) -> dg.ExecutorDefinition | None:
    """The executor ``VMAS_EXECUTOR`` names: ``k8s``, every step a Kubernetes Job (at most
    ``VMAS_K8S_MAX_CONCURRENT_STEPS`` at once per run, default 4); unset, empty or ``multiprocess``:
    None, Dagster's default (each step a process of the run)."""
    kind = env.get(EXECUTOR_ENV, "")
    if kind in ("", "multiprocess"):
        return None
    if kind != "k8s":
        raise ValueError(f"{EXECUTOR_ENV}={kind!r}: expected k8s, multiprocess, or unset")
    raw = env.get(MAX_CONCURRENT_ENV) or str(DEFAULT_MAX_CONCURRENT_STEPS)
    try:
        max_concurrent = int(raw)
    except ValueError:
        max_concurrent = 0
    if max_concurrent < 1:
        raise ValueError(f"{MAX_CONCURRENT_ENV}={raw!r}: expected a whole number of steps, at least 1")
    from dagster_k8s import k8s_job_executor  # ~0.4 s: only where it is used

    # The rest (namespace, image, service account, volumes, env) comes from the K8sRunLauncher and
    # the code location's container context (the Helm chart's includeConfigInLaunchedRuns).
    return k8s_job_executor.configured({"max_concurrent": max_concurrent})
