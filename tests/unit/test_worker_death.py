"""Worker processes die with their parent: ``kill -9`` of a stage run leaves no orphan worker.

Real processes throughout: a ``vmas probe --workers 2`` command, and a small parent script that runs
``run_stage`` (the same pool code) on a stage whose rows sleep, once with ``fork`` and once with
``spawn`` workers. Each parent runs in its own session and is killed by its own PID; the test then
watches the worker PIDs it recorded (and kills any survivor by PID before failing).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from vmas.processes import die_with_parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")

VMAS = shutil.which("vmas") or str(Path(sys.executable).parent / "vmas")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "GX_ANALYTICS_ENABLED": "false"}


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its new parent, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc: no psutil needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the parent exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no {what} within {timeout} s")


def _kill_parent_and_watch(proc: subprocess.Popen, workers: list[int], grace: float = 5.0) -> float:
    """``kill -9`` the parent by PID; seconds until every worker is gone. Kills survivors by PID and
    fails when any outlives ``grace``."""
    assert workers and all(_alive(w) for w in workers)
    os.kill(proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    proc.wait(timeout=10)  # reap it (we are its parent)
    while time.monotonic() - killed < grace and any(_alive(w) for w in workers):
        time.sleep(0.02)
    elapsed = time.monotonic() - killed
    survivors = [w for w in workers if _alive(w)]
    for pid in survivors:  # clean up before failing
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not survivors, f"workers {survivors} outlived their killed parent by {grace} s"
    return elapsed


PARENT = textwrap.dedent('''
    """A stage run whose rows sleep: stands in for a long stage; argv: start method, config, artifacts."""
    import os, sys, time
    from pathlib import Path

    from vmas.curation import STAGES
    from vmas.manifest import schema_with
    from vmas.stage import Stage

    def nap(row, settings):
        Path(settings["started"], str(os.getpid())).touch()  # "this worker is busy"
        time.sleep(300)
        return [{}]

    # at import: a spawned worker imports this file again (as __mp_main__) and finds the stage too
    STAGES["nap"] = Stage(name="nap", upstream="ingest", schema=schema_with(), process=nap,
                          settings=lambda cfg, out: {"started": sys.argv[3] + "/started"}, start_method=sys.argv[1])

    if __name__ == "__main__":
        from vmas.config import load_config
        from vmas.curation.runner import run_stage

        cfg = load_config(sys.argv[2], overrides=[f"paths.artifacts_dir={sys.argv[3]}"])
        run_stage("nap", cfg, workers=2, chunk_size=1, progress=False)
''')


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_run_stage_workers_die_when_the_parent_is_killed(tmp_path, repo, start_method):
    from vmas.curation.ingest import SCHEMA
    from vmas.manifest import Manifest

    artifacts = tmp_path / "artifacts"
    Manifest(artifacts / "manifests" / "ingest", SCHEMA).group("b").append(
        [{"id": f"v{i}", "input_id": f"v{i}", "key": "k", "error": None, "path": f"/v{i}.mp4"} for i in range(4)])
    (artifacts / "started").mkdir()
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    proc = subprocess.Popen([sys.executable, str(script), start_method, str(repo / "configs" / "demo.yaml"),
                             str(artifacts)], cwd=tmp_path, env=ENV, start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        started = _wait_for(lambda: [int(p.name) for p in (artifacts / "started").iterdir()] if
                            len(list((artifacts / "started").iterdir())) >= 2 else None, 120, "two busy workers", proc)
        assert set(started) <= set(_children(proc.pid))  # the workers are the parent's own children
        _kill_parent_and_watch(proc, started)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_a_killed_vmas_stage_leaves_no_worker(tmp_path, repo):
    """`vmas probe --workers 2` over 4000 rows (one tiny video, many ids): kill -9 it mid-run."""
    from vmas.curation.download import SCHEMA
    from vmas.manifest import Manifest
    from vmas.media import write_mp4

    video = tmp_path / "v.mp4"
    tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000, dtype=np.float32)[None]
    write_mp4(video, [np.full((32, 32, 3), f * 20, np.uint8) for f in range(10)], 10, audio=tone, sample_rate=16000)
    artifacts = tmp_path / "artifacts"
    Manifest(artifacts / "manifests" / "download", SCHEMA).group("b").append(
        [{"id": f"v{i}", "input_id": f"v{i}", "key": "k", "error": None, "path": str(video), "status": "local"}
         for i in range(4000)])
    proc = subprocess.Popen([VMAS, "probe", "--workers", "2", "--no-progress", "--config",
                             str(repo / "configs" / "demo.yaml"), "--set", f"paths.artifacts_dir={artifacts}"],
                            cwd=repo, env=ENV, start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        workers = _wait_for(lambda: c if len(c := _children(proc.pid)) >= 2 else None, 120, "two workers", proc)
        _kill_parent_and_watch(proc, workers)  # (it checks they were alive: the run was mid-way)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _in_child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=ENV,
                          timeout=60)


def test_a_worker_whose_parent_already_died_exits_at_once():
    """The race: the parent died before the signal was armed (so none will come): the worker leaves."""
    result = _in_child("""
        from vmas.processes import die_with_parent
        die_with_parent(parent_pid=999_999_999)  # never anyone's PID (above the kernel's pid_max)
        print("still here")
    """)
    assert result.returncode == 1 and "still here" not in result.stdout, result.stderr


def test_the_signal_is_armed_with_the_right_parent():
    result = _in_child("""
        import ctypes, os
        from vmas.processes import die_with_parent
        assert die_with_parent(parent_pid=os.getppid())
        sig = ctypes.c_int()
        ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
        print(sig.value)
    """)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == signal.SIGKILL


def test_no_prctl_means_no_change(monkeypatch):
    """Where prctl is missing (macOS, Windows) the initializer does nothing and says so."""
    import vmas.processes as processes

    monkeypatch.setattr(processes, "_prctl", lambda: None)
    assert die_with_parent(parent_pid=999_999_999) is False  # and this process is still here


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_worker_pool_still_does_the_work(start_method):
    from vmas.processes import worker_pool

    with worker_pool(2, start_method) as pool:
        assert list(pool.map(abs, [-1, -2, 3])) == [1, 2, 3]
        assert pool.submit(os.getppid).result() == os.getpid()  # the worker is our child: the check passed
