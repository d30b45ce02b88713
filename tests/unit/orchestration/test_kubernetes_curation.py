"""Curation on Kubernetes, checked offline (no cluster, no kubectl): each curation step's pod, built the
way dagster_k8s's step handler builds it from the asset's tag and the Helm values, passes the
Kubernetes schemas in strict mode and lands on the right nodes; the settings come from the
environment with clear errors; the executor, the `curate` job and the Helm values fit together."""

import json
from pathlib import Path

import pytest
import yaml

from orchestration.kubernetes_curation import (GPU_RESOURCE, GPU_TOLERATION, CurationPods, curation_pods_from_env,
                                               executor_from_env, quantity, step_tags)
from vmas.curation import STAGES


K8S_VERSION = "1.33"
VALUES = Path(__file__).resolve().parents[3] / "k8s" / "dagster" / "values.yaml"


def _values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def _deployment() -> dict:
    [deployment] = _values()["dagster-user-deployments"]["deployments"]
    return deployment


def _deployment_env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in _deployment()["env"]}


def step_pod_job(tags: dict[str, str], step: str, run_id: str = "6f1c2a4e-0d1b-4f7e-9a55-1c1e0b2d3f4a") -> dict:
    """The Job the Kubernetes executor creates for ``step`` (as ``K8sStepHandler.launch_step`` does): the code
    location's container context (the user deployment's env, volumes, resources, as the Helm chart's
    includeConfigInLaunchedRuns passes it), merged with the step's ``dagster-k8s/config`` tag; as JSON."""
    import kubernetes
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (DagsterK8sJobConfig, construct_dagster_k8s_job, get_k8s_job_name,
                                 get_user_defined_k8s_config)

    deployment = _deployment()
    location = K8sContainerContext.create_from_config({"k8s": {
        "env": deployment["env"], "volumes": deployment["volumes"], "volume_mounts": deployment["volumeMounts"],
        "resources": deployment["resources"], "namespace": "vmas", "service_account_name": "dagster"}})
    context = location.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(tags)))
    name = f"dagster-step-{get_k8s_job_name(run_id, step)}"
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    job = construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(job_image=image, dagster_home="/opt/dagster/dagster_home",
                                       instance_config_map="dagster-instance",
                                       postgres_password_secret="dagster-postgresql-secret"),
        args=["dagster", "api", "execute_step"], job_name=name, pod_name=name, component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": "curate", "dagster/op": step, "dagster/run-id": run_id},
        env_vars=[{"name": "DAGSTER_RUN_JOB_NAME", "value": "curate"}, {"name": "DAGSTER_RUN_STEP_KEY", "value": step}])
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


def _pod(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


def _op_tags(stage: str) -> dict[str, str]:
    """The asset's op tags, as Dagster stores them (non-text values JSON), built from this environment."""
    from orchestration.assets.curation import curation_assets

    [asset] = [a for a in curation_assets if a.op.name == stage]
    return dict(asset.op.tags)


def _default_tags(stage: str) -> dict[str, str]:
    """The op tags with every VMAS_K8S_CURATION_* unset."""
    return {key: json.dumps(value) for key, value in step_tags(stage, CurationPods()).items()}


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_curation_asset_carries_its_pod_config(stage):
    assert json.loads(_op_tags(stage)["dagster-k8s/config"]) == step_tags(stage)["dagster-k8s/config"]


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_curation_step_pod_validates_strictly(stage):
    import kubernetes_validate
    from dagster_k8s.job import UserDefinedDagsterK8sConfig

    tags = _op_tags(stage)
    config = UserDefinedDagsterK8sConfig.from_dict(json.loads(tags["dagster-k8s/config"]))
    assert config.container_config["resources"]["requests"]  # every step pod says what it needs
    job = step_pod_job(tags, stage)
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    [container] = _pod(job)["containers"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/data", "/artifacts", "/etc/vmas"}
    assert {"name": "VMAS_CONFIG", "value": "/etc/vmas/params.yaml"} in container["env"]


def test_remove_vocals_gets_a_gpu_node_and_no_cpu_stage_asks_for_a_gpu():
    pods = CurationPods()
    assert "remove_vocals" in pods.gpu_stages
    for stage in STAGES:
        pod = _pod(step_pod_job(_default_tags(stage), stage))
        resources = pod["containers"][0]["resources"]
        if pods.is_gpu_stage(stage):
            assert resources["requests"][GPU_RESOURCE] == resources["limits"][GPU_RESOURCE] == "1"
            assert GPU_TOLERATION in pod["tolerations"]
            assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert resources["requests"]["cpu"] == "6" and resources["limits"]["memory"] == "24Gi"
        else:
            assert GPU_RESOURCE not in resources.get("requests", {}) and GPU_RESOURCE not in resources.get("limits", {})
            assert not pod.get("tolerations") and not pod.get("nodeSelector")  # off the tainted GPU nodes
            # the step's own size replaces the code server's (32Gi), which run pods inherit
            if stage in pods.network_stages:  # download: threads waiting on the network, a small pod
                assert resources["requests"] == {"cpu": "2", "memory": "2Gi"}
                assert resources["limits"] == {"memory": "4Gi"}
            else:
                assert resources["requests"] == {"cpu": "8", "memory": "16Gi"}
                assert resources["limits"] == {"memory": "32Gi"}
    assert pods.network_stages == ["download"]


def test_the_executor_reads_the_tags_from_the_run_plan(repo, live_instance):
    """``K8sStepHandler`` takes a step's tags from the run's execution plan: they are the asset's op tags."""
    from dagster._core.execution.api import create_execution_plan

    from orchestration.definitions import definitions_from_env

    job = definitions_from_env({"VMAS_CONFIG": str(repo / "params.yaml"), "VMAS_EXECUTOR": "k8s"}).resolve_job_def(
        "curate")
    plan = create_execution_plan(job)
    assert {s.key for s in plan.steps} == {n for n, s in STAGES.items() if s.scope == "batch"}
    for step in plan.steps:
        assert step.tags["dagster-k8s/config"] == _op_tags(step.key)["dagster-k8s/config"]


def test_the_strict_check_refuses_a_pod_the_api_server_would_refuse():
    import kubernetes_validate

    job = step_pod_job(_op_tags("remove_vocals"), "remove_vocals")
    _pod(job)["nodeSelecter"] = {"pool": "gpu"}  # an unknown field
    with pytest.raises(kubernetes_validate.ValidationError, match="nodeSelecter"):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    job = step_pod_job(_op_tags("remove_vocals"), "remove_vocals")
    _pod(job)["tolerations"][0]["tolerationSeconds"] = "soon"  # an integer
    with pytest.raises(kubernetes_validate.ValidationError, match="'soon' is not of type 'integer'"):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    # and unknown fields in a tag stop dagster_k8s before any of it
    config = json.loads(_op_tags("remove_vocals")["dagster-k8s/config"])
    config["pod_spec_config"]["nodeSelecter"] = {"pool": "gpu"}
    with pytest.raises(Exception, match="Unexpected keys in model class V1PodSpec"):
        step_pod_job({"dagster-k8s/config": json.dumps(config)}, "remove_vocals")


# --------------------------------------------------------------------------- settings from the environment


def test_settings_come_from_the_environment_as_json():
    pods = curation_pods_from_env({"VMAS_K8S_CURATION_NODE_SELECTOR": '{"pool": "cpu-highmem"}',
                                   "VMAS_K8S_CURATION_GPU_STAGES": '["remove_vocals"]',
                                   "VMAS_K8S_CURATION_MEMORY": "24Gi", "VMAS_K8S_CURATION_MEMORY_LIMIT": "",
                                   "VMAS_K8S_CURATION_GPUS": "2", "VMAS_K8S_OTHER": "not ours"})
    assert pods.node_selector == {"pool": "cpu-highmem"} and pods.gpu_stages == ["remove_vocals"]
    assert pods.memory == "24Gi" and pods.memory_limit == "32Gi"  # empty: the default
    config = step_tags("tokenize", pods)["dagster-k8s/config"]
    assert config["pod_spec_config"] == {"node_selector": {"pool": "cpu-highmem"}}  # a CPU stage now
    assert config["container_config"]["resources"]["requests"] == {"cpu": "8", "memory": "24Gi"}
    gpu = step_tags("remove_vocals", pods)["dagster-k8s/config"]
    assert gpu["container_config"]["resources"]["limits"][GPU_RESOURCE] == "2"
    assert gpu["pod_spec_config"]["node_selector"] == {"nvidia.com/gpu.present": "true"}
    assert curation_pods_from_env({}) == CurationPods()


@pytest.mark.parametrize("env, message", [
    ({"VMAS_K8S_CURATION_NODE_SELECTOR": "pool=cpu"}, r"VMAS_K8S_CURATION_NODE_SELECTOR='pool=cpu' is not JSON"),
    ({"VMAS_K8S_CURATION_NODE_SELECTOR": '["pool"]'}, r"VMAS_K8S_CURATION_NODE_SELECTOR: .*dictionary"),
    ({"VMAS_K8S_CURATION_GPU_STAGES": '["remove_vocal"]'},
     r"VMAS_K8S_CURATION_GPU_STAGES: .*unknown stage\(s\) \['remove_vocal'\]"),
    ({"VMAS_K8S_CURATION_MEMORY": "lots"}, r"VMAS_K8S_CURATION_MEMORY: .*'lots' is not a Kubernetes quantity"),
    ({"VMAS_K8S_CURATION_GPUS": "0"}, r"VMAS_K8S_CURATION_GPUS: .*greater than or equal to 1"),
    ({"VMAS_K8S_CURATION_GPU_MEMORY": "32Gi"},
     r"VMAS_K8S_CURATION_GPU_MEMORY_LIMIT: .*24Gi is below the request, gpu_memory 32Gi"),
    ({"VMAS_K8S_CURATION_CPU_LIMIT": "lots"}, r"VMAS_K8S_CURATION_CPU_LIMIT: .*'lots' is not a Kubernetes quantity"),
    ({"VMAS_K8S_CURATION_GPU": "1"}, r"VMAS_K8S_CURATION_GPU: no such setting"),
    ({"VMAS_K8S_CURATION_GPU_TOLERATIONS": '[{"key": "nvidia.com/gpu", "efect": "NoSchedule"}]'},
     r"VMAS_K8S_CURATION_GPU_TOLERATIONS: .*unknown field\(s\) \['efect'\]"),
])
def test_a_bad_setting_names_its_variable(env, message):
    with pytest.raises(ValueError, match=message):
        curation_pods_from_env(env)


def test_quantities():
    assert quantity("500m") == quantity("0.5") == quantity(".5") and quantity("16Gi") == 16 * 2**30
    assert quantity("1e3") == quantity("1k") == 1000 and quantity("2E") == 2 * 10**18 and quantity("1Ei") == 2**60
    for bad in ("16 GB", "1.2.3", "-1", " 8", "Gi", ""):
        with pytest.raises(ValueError):
            quantity(bad)


# --------------------------------------------------------------------------- the executor and the job


def test_the_executor_is_kubernetes_only_when_asked():
    assert executor_from_env({}) is None and executor_from_env({"VMAS_EXECUTOR": "multiprocess"}) is None
    executor = executor_from_env({"VMAS_EXECUTOR": "k8s", "VMAS_K8S_MAX_CONCURRENT_STEPS": "2"})
    assert executor.name == "k8s"
    resolved = executor.config_schema.resolve_config({})  # what the executor is started with
    assert resolved.success and resolved.value["config"]["max_concurrent"] == 2
    assert executor_from_env({"VMAS_EXECUTOR": "k8s"}).config_schema.resolve_config({}).value["config"][
        "max_concurrent"] == 4
    with pytest.raises(ValueError, match="VMAS_EXECUTOR='celery': expected k8s"):
        executor_from_env({"VMAS_EXECUTOR": "celery"})
    with pytest.raises(ValueError, match="VMAS_K8S_MAX_CONCURRENT_STEPS='0'"):
        executor_from_env({"VMAS_EXECUTOR": "k8s", "VMAS_K8S_MAX_CONCURRENT_STEPS": "0"})


@pytest.mark.parametrize("executor", ["", "k8s"])
def test_the_definitions_run_their_steps_as_vmas_executor_says(repo, executor, live_instance):
    from orchestration.assets.curation import ingest_batches
    from orchestration.definitions import definitions_from_env

    env = {"VMAS_CONFIG": str(repo / "params.yaml")} | ({"VMAS_EXECUTOR": executor} if executor else {})
    defs = definitions_from_env(env)
    curate = defs.resolve_job_def("curate")
    jobs = [curate, defs.resolve_implicit_global_asset_job_def()]
    if executor:
        assert all(j.executor_def.name == "k8s" for j in jobs)
    else:  # locally nothing changes: Dagster's default executor
        assert all(j.executor_def.name == "multi_or_in_process_executor" for j in jobs)
    assert curate.partitions_def == ingest_batches
    batch = {n for n, s in STAGES.items() if s.scope == "batch"}
    assert {k.to_user_string() for k in curate.asset_layer.executable_asset_keys} == batch
    assert "train_codec" not in batch


# --------------------------------------------------------------------------- the Helm values


def test_the_helm_values_queue_runs_and_run_each_step_in_a_pod():
    from dagster._config import validate_config
    from dagster._core.run_coordinator.queued_run_coordinator import QueuedRunCoordinator

    values = _values()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert set(queued) <= {"maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds", "dequeueNumWorkers",
                           "dequeueUseThreads", "blockOpConcurrencyLimitedRuns"}  # the chart's keys
    assert queued["maxConcurrentRuns"] >= 2
    for limit in queued["tagConcurrencyLimits"]:
        assert set(limit) <= {"key", "value", "limit"} and limit["limit"] < queued["maxConcurrentRuns"]
    # what the chart writes into dagster.yaml, accepted by Dagster's own run coordinator schema
    result = validate_config(QueuedRunCoordinator.config_type(), {
        "max_concurrent_runs": queued["maxConcurrentRuns"], "tag_concurrency_limits": queued["tagConcurrencyLimits"]})
    assert result.success, result.errors
    env = _deployment_env()
    assert env["VMAS_EXECUTOR"] == "k8s"
    assert executor_from_env(env).name == "k8s"
    pods = curation_pods_from_env(env)  # the deployment's settings parse
    assert pods.is_gpu_stage("remove_vocals") and not pods.is_gpu_stage("beats")
    assert quantity(pods.cpu) == int(env["VMAS_WORKERS"])  # a core per worker process


def test_the_dagster_service_account_may_run_step_jobs(repo):
    """The run pod creates, follows and deletes a Job per step, and reads its pod's log when it fails."""
    docs = list(yaml.safe_load_all((repo / "k8s" / "base" / "dagster-rbac.yaml").read_text()))
    [role] = [d for d in docs if d["kind"] == "Role"]
    [binding] = [d for d in docs if d["kind"] == "RoleBinding"]
    assert {"kind": "ServiceAccount", "name": _values()["global"]["serviceAccountName"]} in binding["subjects"]
    allowed = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    needed = {("batch", "jobs", v) for v in ("create", "get", "list", "watch", "delete")} | {
        ("batch", "jobs/status", "get"), ("", "pods", "get"), ("", "pods", "list"), ("", "pods/log", "get")}
    assert needed <= allowed
