"""Sweep backends (``benchsuite.backends``). On Ray (``RayBackend``, marker ``ray``): a local cluster of a head and a second node on 127.0.0.1, four
toy runs (two at a time, one per node), one of whose worker processes dies right after its first mid-run checkpoint (fault injection): nothing is
lost, nothing runs twice (the retry resumes from the checkpoint), MLflow holds each run once, and the results are
identical to the local pool's; it needs the ray extra and is skipped without it, except under CI=true. The local
pool retries a run whose worker died alike; the backend flags' bad input exits 2."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from benchsuite.backends import FAULT_ENV, FAULT_MARKER, RayBackend
from benchsuite.sweep import SweepSpec, plan, run_many
from benchsuite.testing import deterministic
from benchsuite.tracking import default_tracking_uri



def _need_ray() -> None:
    """Skip without ray, except under CI=true, where its absence fails the test."""
    if os.environ.get("CI") != "true":
        pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'benchsuite[ray]')")
    elif importlib.util.find_spec("ray") is None:
        pytest.fail("CI=true but ray is not installed: .ci/run installs it with the ray extra (pip install -e '.[test,ray]')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HOST = "127.0.0.2"  # loopback, but not an address Ray rewrites to the machine's network address as it does 127.0.0.1


def _ray_node(temp: Path, env: dict, head_port: int, head: bool) -> subprocess.Popen:
    """``ray start --block`` of one node with one CPU on ``HOST``, in its own process group."""
    ray = str(Path(sys.executable).parent / "ray")
    # the fixed default ports would clash between the two nodes (and other clusters); the others Ray picks itself
    ports = ["--dashboard-agent-listen-port", str(_free_port())]
    role = (["--head", "--port", str(head_port), "--include-dashboard", "false", "--dashboard-port", str(_free_port()),
             "--temp-dir", str(temp)] if head else ["--address", f"{HOST}:{head_port}"])
    return subprocess.Popen([ray, "start", "--block", "--node-ip-address", HOST, "--num-cpus", "1", "--num-gpus", "0",
                             "--object-store-memory", str(80 * 2**20), "--disable-usage-stats", *role, *ports],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _wait_for_port(port: int, timeout: float = 150.0) -> None:
    """Wait until the head's GCS accepts connections."""
    began = time.monotonic()
    while True:
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        assert time.monotonic() - began < timeout, f"the Ray head did not start in {timeout} s"
        time.sleep(1)


def _wait_for_nodes(port: int, count: int, timeout: float = 150.0) -> None:
    """Wait until the head takes a driver and ``count`` nodes are alive."""
    import ray

    began = time.monotonic()
    while True:
        try:
            ray.init(address=f"{HOST}:{port}", log_to_driver=False, configure_logging=False)
            break
        except ConnectionError:  # the GCS is up, the head's raylet not yet
            assert time.monotonic() - began < timeout, f"the Ray head did not start in {timeout} s"
            time.sleep(2)
    try:
        while sum(node["Alive"] for node in ray.nodes()) < count:
            assert time.monotonic() - began < timeout, f"{count} Ray nodes did not come up in {timeout} s"
            time.sleep(1)
    finally:
        ray.shutdown()


def _stop(nodes: list[subprocess.Popen], temp: Path) -> None:
    """End the nodes' process groups, then any process of this cluster left (its command line names ``temp``)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for node in nodes:
            try:
                os.killpg(node.pid, sig)
            except ProcessLookupError:
                pass
        if sig == signal.SIGTERM:
            time.sleep(2)
    for node in nodes:
        node.wait(timeout=30)
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(temp).encode() in (proc / "cmdline").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass


def _train_steps(run_dir: Path) -> list[int]:
    """Query counts of the training-step lines of a run's metrics.jsonl (a step logged twice appears twice)."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [line["step"] for line in lines if any(k.startswith("train/") for k in line.get("metrics", line))]


@pytest.mark.ray
@pytest.mark.timeout(600)  # Ray's start is slow on a loaded machine (5 min at a load of 10 on 2 cores)
def test_ray_sweep_survives_a_killed_worker_and_matches_the_local_pool(tmp_path, monkeypatch):
    _need_ray()
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv(FAULT_ENV, raising=False)
    spec = SweepSpec(name="ray-toy", tasks=("toy-brightness-v0",), methods=("ddpo", "sqdf"), seeds=(0, 1), budget=96,
                     eval_fractions=(0.0, 0.5, 1.0))
    configs = plan(spec, tmp_path / "ray")
    victim = configs[1]  # ddpo seed 1: its worker dies after the checkpoint at 64 of 96 queries
    temp = Path(tempfile.mkdtemp(prefix="bsray", dir="/tmp"))  # short: Ray's socket paths live under it
    env = {**os.environ, FAULT_ENV: victim.run_id, "RAY_USAGE_STATS_ENABLED": "0"}
    head_port = _free_port()
    nodes = []
    try:
        nodes.append(_ray_node(temp, env, head_port, head=True))
        _wait_for_port(head_port)
        nodes.append(_ray_node(temp, env, head_port, head=False))  # joins while the head's raylet starts
        _wait_for_nodes(head_port, 2)
        tracking = (default_tracking_uri(tmp_path / "mlflow"), str(tmp_path / "mlflow" / "artifacts"))
        outcomes = run_many(configs, spec.name, tracking=tracking,
                            backend=RayBackend(address=f"{HOST}:{head_port}", retries=2))
    finally:
        _stop(nodes, temp)
        shutil.rmtree(temp, ignore_errors=True)

    assert [o.status for o in outcomes] == ["FINISHED"] * 4, [o.error for o in outcomes]
    assert (victim.run_dir / FAULT_MARKER).read_text().strip() == "64"  # the first attempt died there
    assert [o.started for o in outcomes] == ["new", "checkpointed", "new", "new"]  # its retry resumed
    for o in outcomes:  # nothing run twice: every training step logged once, every query paid once
        steps = _train_steps(o.config.run_dir)
        assert steps == sorted(set(steps)) and steps[-1] == 96, (o.config.method, steps)

    client = MlflowClient(tracking[0])
    runs = client.search_runs([client.get_experiment_by_name("toy-brightness-v0").experiment_id])
    children = [r for r in runs if r.data.tags.get("benchsuite.kind") != "sweep"]
    assert sorted(r.data.tags["run_id"] for r in children) == sorted(c.run_id for c in configs)
    assert all(r.info.status == "FINISHED" for r in runs)

    local = run_many(plan(spec, tmp_path / "local"), spec.name, workers=1)  # this process: no fault injected
    assert [o.started for o in local] == ["new"] * 4
    for ray_run, local_run in zip(outcomes, local, strict=True):
        assert ray_run.config.run_id == local_run.config.run_id
        assert deterministic(ray_run.final) == deterministic(local_run.final)
        for name in ("query_log.csv",):
            assert (ray_run.config.run_dir / name).read_bytes() == (local_run.config.run_dir / name).read_bytes()


@pytest.mark.ray  # the same worker death on the local pool; spawned workers make it 1-2 minutes, so it joins that tier
@pytest.mark.timeout(600)
def test_local_pool_retries_a_run_whose_worker_died_from_its_checkpoint(tmp_path, monkeypatch):
    spec = SweepSpec(name="retry", tasks=("toy-brightness-v0",), methods=("ddpo",), seeds=(0, 1), budget=96,
                     eval_fractions=(0.0, 0.5, 1.0))
    configs = plan(spec, tmp_path)
    monkeypatch.setenv(FAULT_ENV, configs[0].run_id)  # spawned workers inherit it
    outcomes = run_many(configs, spec.name, workers=2)
    assert [o.status for o in outcomes] == ["FINISHED"] * 2, [o.error for o in outcomes]
    assert (configs[0].run_dir / FAULT_MARKER).exists() and outcomes[0].started == "checkpointed"
    for o in outcomes:  # the other run may have been ended with the broken pool; it resumed or restarted alike
        steps = _train_steps(o.config.run_dir)
        assert steps == sorted(set(steps)) and steps[-1] == 96
    monkeypatch.delenv(FAULT_ENV)
    again = run_many(plan(spec, tmp_path / "clean"), spec.name, workers=1)
    assert [deterministic(o.final) for o in outcomes] == [deterministic(o.final) for o in again]


def test_backend_flags_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    from benchsuite.cli import main

    args = ["sweep", "--tasks", "toy-brightness-v0", "--methods", "ddpo", "--budget", "32", "--output",
            str(tmp_path / "out")]
    assert main([*args, "--address", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("benchsuite: error: ") and "--backend ray" in err and "\n" not in err
    assert main([*args, "--backend", "dask"]) == 2 and "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_ray_resources_and_portable_paths(tmp_path, monkeypatch):
    from benchsuite.backends import portable, portable_tracking
    from benchsuite.config import resolve

    backend = RayBackend(gpus=0.5)
    toy = resolve("toy-brightness-v0", "ddpo", budget=0, output_root="rel")
    assert backend.resources(toy) == {"num_cpus": 1, "num_gpus": 0}
    assert backend.resources(resolve("toy-brightness-v0", "ddpo", budget=0, device="cuda")) == {
        "num_cpus": 1, "num_gpus": 0.5}
    assert backend.resources(resolve("sd15-jpeg-compress-v0", "ddpo", budget=0))["num_gpus"] == 0.5
    monkeypatch.chdir(tmp_path)
    moved = portable(toy)
    assert moved.output_root == str(tmp_path / "rel") and moved.run_id == toy.run_id
    assert portable_tracking(("sqlite:///db/m.db", "art")) == (f"sqlite:///{tmp_path}/db/m.db", str(tmp_path / "art"))
    assert portable_tracking(("http://127.0.0.1:5000", "/a"))[0] == "http://127.0.0.1:5000"
    assert portable_tracking(None) is None
