"""Running the study beyond one machine: claim files, the submitit executor (through submitit's local
cluster, no Slurm needed), pre-emption and requeue, two runners sharing one results store, status."""
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit
import torch

from assignlab.cli import main as cli_main
from assignlab.presets import preset
from assignlab.study.run import locks
from assignlab.study.run.executors import (
    SlurmSettings,
    SubmititRunner,
    TrainRequest,
    TrainTask,
    load_slurm_settings,
    torchrun_command,
)
from assignlab.study.run.plan import plan_runs
from assignlab.study.run.runner import run_table
from assignlab.study.run.store import StudyPaths
from assignlab.study.tables.methods import deta, hungarian
from assignlab.study.tables.spec import RowSpec, TableSpec

SUBMITIT_LOCAL = {"cluster": "local", "gpus_per_node": 0, "time_min": 10, "poll_s": 0.2}
TWO_RUNS = TableSpec("two_runs", "two runs", claims=(), rows=(RowSpec("H", hungarian()), RowSpec("D", deta(4))))


def _owner(token: str, pid: int | None = None, host: str | None = None) -> locks.Owner:
    return locks.Owner(token, "local", None, host or socket.gethostname(), os.getpid() if pid is None else pid)


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def _count(run_dir: Path, event: str) -> int:
    return sum(record["event"] == event for record in _events(run_dir))


def _losses(result: dict) -> list[float]:
    return [point["train_loss"] for point in result["curve"]]


# ------------------------------------------------------------------------------------- claims
def test_a_free_run_is_claimed_and_a_live_claim_is_respected(tmp_path):
    mine = locks.acquire(tmp_path, _owner("me"))
    assert mine is not None and mine.owner == "me"
    on_disk = json.loads((tmp_path / "claim.json").read_text())
    assert on_disk["owner"] == "me" and on_disk["pid"] == os.getpid() and on_disk["host"] == socket.gethostname()
    assert locks.acquire(tmp_path, _owner("other"), stale_after_s=60) is None  # live: our pid, fresh heartbeat
    again = locks.acquire(tmp_path, _owner("me"))  # a requeued job finds its own claim
    assert again is not None and again.started == mine.started and again.heartbeat >= mine.heartbeat
    locks.release(locks.RunLock(**{**mine.to_dict(), "owner": "other"}), tmp_path)  # not other's to release
    assert (tmp_path / "claim.json").exists()
    locks.release(mine, tmp_path)
    assert not (tmp_path / "claim.json").exists()


def test_a_claim_without_heartbeat_is_taken_over(tmp_path):
    old = time.time() - 100
    stale = locks.RunLock("elsewhere", "slurm", "77", "node-far-away", 1234, old, old)
    (tmp_path / "claim.json").write_text(json.dumps(stale.to_dict()))
    assert "no heartbeat for 10" in stale.stale_reason(timeout_s=30)
    assert locks.acquire(tmp_path, _owner("late"), stale_after_s=200) is None  # 100 s < 200 s: still live
    taken = locks.acquire(tmp_path, _owner("late"), stale_after_s=30)
    assert taken is not None and locks.read_claim(tmp_path).owner == "late"


def test_a_claim_of_an_ended_process_on_this_host_is_stale_at_once(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(ended.stdout)
    locks.acquire(tmp_path, _owner("crashed", pid=dead_pid))
    assert "has ended" in locks.read_claim(tmp_path).stale_reason(timeout_s=3600)
    assert locks.acquire(tmp_path, _owner("next"), stale_after_s=3600).owner == "next"


def test_a_half_written_claim_counts_as_live_until_it_is_old(tmp_path):
    (tmp_path / "claim.json").write_text("")
    assert locks.acquire(tmp_path, _owner("b"), stale_after_s=60) is None
    old = time.time() - 120
    os.utime(tmp_path / "claim.json", (old, old))
    assert locks.acquire(tmp_path, _owner("b"), stale_after_s=60).owner == "b"


def _stale_claim(tmp_path) -> locks.RunLock:
    old = time.time() - 1000
    stale = locks.RunLock("gone", "slurm", "1", "far", 1, old, old)
    (tmp_path / "claim.json").write_text(json.dumps(stale.to_dict()))
    return stale


def _race(folder: str, index: int, start: float, stale_after_s: float, wins) -> None:
    while time.time() < start:
        pass
    owner = locks.Owner(f"racer-{index}", "local", None, socket.gethostname(), os.getpid())
    if locks.acquire(folder, owner, stale_after_s=stale_after_s) is not None:
        wins.put(index)
    time.sleep(0.5)  # stay alive: a claim of an ended process would be stale


@pytest.mark.parametrize("stale_claim_first", [False, True])
def test_of_many_processes_claiming_at_once_exactly_one_wins(tmp_path, stale_claim_first):
    if stale_claim_first:
        _stale_claim(tmp_path)
    context = multiprocessing.get_context("fork")
    wins = context.Queue()
    start = time.time() + 0.3
    racers = [context.Process(target=_race, args=(str(tmp_path), i, start, 60.0, wins)) for i in range(8)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=30)
    winners = []
    while not wins.empty():
        winners.append(wins.get())
    assert len(winners) == 1
    assert locks.read_claim(tmp_path).owner == f"racer-{winners[0]}"


def test_a_takeover_never_removes_a_claim_written_after_the_stale_one_was_judged(tmp_path):
    judged = _stale_claim(tmp_path)
    fresh = locks.acquire(tmp_path / "other", _owner("fresh"))  # a live claim, moved into place
    (tmp_path / "other" / "claim.json").replace(tmp_path / "claim.json")
    locks._remove_if_unchanged(tmp_path / "claim.json", judged)
    assert locks.read_claim(tmp_path) == fresh
    assert not (tmp_path / ".claim.json.takeover").exists()


def test_a_stale_claim_is_left_alone_while_another_process_takes_it_over(tmp_path):
    _stale_claim(tmp_path)
    (tmp_path / ".claim.json.takeover").write_text("")  # another process's takeover lock
    assert locks.acquire(tmp_path, _owner("late"), stale_after_s=60) is None
    assert locks.read_claim(tmp_path).owner == "gone"
    old = time.time() - 2 * locks.TAKEOVER_LOCK_STALE_S  # its holder died holding it
    os.utime(tmp_path / ".claim.json.takeover", (old, old))
    assert locks.acquire(tmp_path, _owner("late"), stale_after_s=60).owner == "late"
    assert not (tmp_path / ".claim.json.takeover").exists()


def test_the_heartbeat_is_refreshed_and_notices_a_takeover(tmp_path):
    claim = locks.acquire(tmp_path, _owner("beating"))
    with locks.Heartbeat(claim, tmp_path, interval_s=0.05) as beat:
        time.sleep(0.3)
        assert locks.read_claim(tmp_path).heartbeat > claim.heartbeat
        (tmp_path / "claim.json").write_text(json.dumps({**claim.to_dict(), "owner": "thief"}))
        time.sleep(0.3)
        assert beat.lost
    assert locks.read_claim(tmp_path).owner == "thief"  # the heartbeat never overwrites another owner


def test_the_stale_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(locks.STALE_ENV, "42")
    assert locks.stale_after() == 42.0 and locks.stale_after(5) == 5.0
    monkeypatch.setenv(locks.STALE_ENV, "soon")
    with pytest.raises(ValueError, match="ASSIGNLAB_STALE_CLAIM_S='soon'"):
        locks.stale_after()


# ---------------------------------------------------------------------------- slurm settings
def test_slurm_settings_from_a_file_then_the_environment(tmp_path):
    config = tmp_path / "slurm.yaml"
    config.write_text("partition: gpu\ngpus_per_node: 8\nnodes: 2\naccount: detection\n"
                      "setup: ['module load cuda', 'source .venv/bin/activate']\n")
    settings = load_slurm_settings(config, environ={"ASSIGNLAB_SLURM_NODES": "4", "ASSIGNLAB_SLURM_TIME_MIN": "90"})
    assert (settings.partition, settings.gpus_per_node, settings.nodes, settings.time_min) == ("gpu", 8, 4, 90)
    assert settings.setup == ("module load cuda", "source .venv/bin/activate") and settings.constraint is None
    params = settings.executor_parameters("assignlab-x")
    assert params["slurm_partition"] == "gpu" and params["slurm_account"] == "detection"
    assert params["nodes"] == 4 and params["tasks_per_node"] == 1 and params["timeout_min"] == 90
    assert "slurm_constraint" not in params
    from_env = load_slurm_settings(None, environ={"ASSIGNLAB_SLURM_CONFIG": str(config),
                                                  "ASSIGNLAB_SLURM_CONSTRAINT": "a100"})
    assert from_env.partition == "gpu" and from_env.constraint == "a100"


def test_bad_slurm_settings_name_the_file_and_field(tmp_path):
    config = tmp_path / "slurm.json"
    config.write_text(json.dumps({"partition": "gpu", "gpu_per_node": 8}))
    with pytest.raises(ValueError, match=r"slurm.json: field 'gpu_per_node': unknown slurm setting"):
        load_slurm_settings(config, environ={})
    config.write_text(json.dumps({"nodes": "two"}))
    with pytest.raises(ValueError, match=r"slurm.json: field 'nodes': 'two' is not a valid int"):
        load_slurm_settings(config, environ={})
    with pytest.raises(ValueError, match="ASSIGNLAB_SLURM_NODES: '0x'"):
        load_slurm_settings(None, environ={"ASSIGNLAB_SLURM_NODES": "0x"})
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_slurm_settings(tmp_path / "missing.yaml", environ={})


def test_the_slurm_job_script_asks_for_the_settings(tmp_path, monkeypatch):
    fake_bin = tmp_path / "bin"  # submitit's Slurm executor only looks for srun when it is built
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    settings = SlurmSettings(partition="gpu", gpus_per_node=8, nodes=2, time_min=90, account="proj",
                             constraint="a100", mem_gb=200, setup=("module load cuda",))
    executor = SubmititRunner(settings, tmp_path / "submitit").make_executor()
    executor.update_parameters(**settings.executor_parameters("assignlab-run"))
    script = executor._executor._make_submission_file_text("python -m submitit.core._submit", "uid")
    for line in ("--partition=gpu", "--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=8", "--time=90",
                 "--account=proj", "--constraint=a100", "--mem=200GB", "--signal=USR2@120", "--job-name=assignlab-run"):
        assert f"#SBATCH {line}\n" in script, line
    assert "module load cuda" in script


def test_reproduce_passes_the_slurm_settings_file_to_the_notebooks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASSIGNLAB_SLURM_CONFIG", "")
    monkeypatch.setattr("assignlab.reproduce.execute_notebook", lambda *args, **kwargs: None)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "probe.ipynb").write_text("{}")
    (tmp_path / "slurm.json").write_text(json.dumps({"partition": "gpu"}))
    assert cli_main(["reproduce", "--executor", "slurm", "--slurm-config", "slurm.json", "--only", "probe"]) == 0
    assert os.environ["ASSIGNLAB_SLURM_CONFIG"] == str(tmp_path / "slurm.json")
    (tmp_path / "bad.json").write_text(json.dumps({"partitions": "gpu"}))
    with pytest.raises(ValueError, match="bad.json: field 'partitions'"):
        cli_main(["reproduce", "--executor", "slurm", "--slurm-config", "bad.json", "--only", "probe"])


def test_multi_gpu_runs_start_torchrun_with_a_rendezvous_on_the_first_node():
    request = TrainRequest("{}", 3, "/runs/x", device="cuda", gpus_per_node=4, nodes=2, rdzv_port=29511)
    command = torchrun_command(request, Path("/runs/x"), "node017", "4242")
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert {"--nproc_per_node=4", "--nnodes=2", "--rdzv_backend=c10d", "--rdzv_endpoint=node017:29511",
            "--rdzv_id=4242"} <= set(command)
    train = command[command.index("assignlab"):]
    assert train[:2] == ["assignlab", "train"] and train[train.index("--config") + 1] == "/runs/x/config.json"
    assert train[train.index("--seed") + 1] == "3" and train[train.index("--device") + 1] == "cuda"
    single = torchrun_command(TrainRequest("{}", 0, "/r", gpus_per_node=8), Path("/r"), "n1", "1")
    assert "--standalone" in single and not any(a.startswith("--rdzv") for a in single)


# ------------------------------------------------------------------------------- end to end
def test_a_run_of_several_processes_trains_through_torchrun(tmp_path):
    """Two CPU processes (gloo) stand in for the GPUs of a node: the task claims the run, starts
    torchrun with the run's config file, and returns the result that rank 0 wrote."""
    config = preset("smoke").override({"data.root": str(tmp_path / "data")})
    answer = TrainTask(TrainRequest(config.to_json(), 0, str(tmp_path / "run"), gpus_per_node=2))()
    assert answer["state"] == "trained" and answer["result"]["world_size"] == 2
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == json.loads(config.to_json())
    assert "torch.distributed.run --nproc_per_node=2 --standalone" in (tmp_path / "run" / "train.log").read_text()
    assert _count(tmp_path / "run", "start") == 1 and not (tmp_path / "run" / "claim.json").exists()


def test_a_table_through_submitit_matches_the_local_executor(tmp_path):
    """Exact equality on one machine: both executors train each run in one process at one thread."""
    data = str(tmp_path / "data")
    local = run_table(TWO_RUNS, "smoke", workers=2, threads_per_worker=1, results_dir=tmp_path / "a" / "results",
                      data_root=data, progress=False)
    cluster = run_table(TWO_RUNS, "smoke", threads_per_worker=1, executor="slurm", slurm=SUBMITIT_LOCAL,
                        results_dir=tmp_path / "b" / "results", data_root=data, progress=False)
    assert [o.state for o in local.outcomes] == ["trained"] * 2 and [o.state for o in cluster.outcomes] == ["trained"] * 2
    for outcome in local.outcomes:
        mine = json.loads(outcome.result_file.read_text())
        theirs = json.loads(StudyPaths.make(tmp_path / "b" / "results").result_file("two_runs", outcome.run.run_id).read_text())
        assert theirs["metrics"] == mine["metrics"] and _losses(theirs) == _losses(mine)
        assert theirs["rows"] == mine["rows"] and theirs["run_id"] == outcome.run.run_id
    assert list((tmp_path / "b" / "work-cache" / "submitit").glob("*/*_log.out"))  # submitit's job logs
    assert not list((tmp_path / "b" / "work-cache" / "runs").glob("*/claim.json"))  # released


def test_two_runners_on_one_table_train_every_run_once(tmp_path):
    results, cache, data = tmp_path / "results", tmp_path / "cache", tmp_path / "data"
    script = (
        "import json, sys\n"
        "from assignlab.study.run.runner import run_table\n"
        "if __name__ == '__main__':\n"
        f"    report = run_table('deta_table1', 'smoke', workers=1, threads_per_worker=1, results_dir={str(results)!r},"
        f" cache_dir={str(cache)!r}, data_root={str(data)!r}, progress=False)\n"
        "    print(json.dumps({o.run.run_id: o.state for o in report.outcomes}))\n")
    runners = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    reports = []
    for runner in runners:
        out, err = runner.communicate(timeout=150)
        assert runner.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    planned = {run.run_id for run in plan_runs("deta_table1", "smoke", data_root=str(data))}
    assert set(reports[0]) == set(reports[1]) == planned  # each runner ends with the complete table
    for run_id in planned:
        assert _count(cache / run_id, "start") == 1 and _count(cache / run_id, "resume") == 0
        states = sorted([reports[0][run_id], reports[1][run_id]])
        assert states[1] == "trained" and states[0] in ("finished", "reused")  # copied, when and how it found it
        assert (results / "runs" / "deta_table1" / f"{run_id}.json").exists()
    assert not list(cache.glob("*/claim.json"))


def _hold_every_run(spec: TableSpec, paths: StudyPaths) -> list:
    """Claim each run of ``spec`` for a live owner that is not this runner (our pid keeps it live)."""
    runs = plan_runs(spec, "smoke")
    for run in runs:
        assert locks.acquire(paths.run_dir(run.run_id), _owner("other")) is not None
    return runs


def _finish_as_other_runner(run, paths: StudyPaths) -> None:
    (paths.run_dir(run.run_id) / "result.json").write_text(json.dumps({"metrics": {"AP": 12.5}}))
    (paths.run_dir(run.run_id) / "claim.json").unlink()


@pytest.mark.timeout(60)  # a runner that waits instead would hang
def test_a_runner_that_does_not_wait_lists_the_runs_another_runner_holds(tmp_path):
    paths = StudyPaths.make(tmp_path / "results", tmp_path / "cache")
    runs = _hold_every_run(TWO_RUNS, paths)
    report = run_table(TWO_RUNS, "smoke", results_dir=paths.results_dir, cache_dir=paths.cache_dir, progress=False,
                       wait_for_others=False)
    assert report.outcomes == [] and [r.run_id for r in report.deferred] == [r.run_id for r in runs]
    assert not any((paths.run_dir(r.run_id) / "log.jsonl").exists() for r in runs)  # nothing trained here

    _finish_as_other_runner(runs[0], paths)
    report = run_table(TWO_RUNS, "smoke", results_dir=paths.results_dir, cache_dir=paths.cache_dir, progress=False,
                       wait_for_others=False)
    assert [(o.run.run_id, o.state) for o in report.outcomes] == [(runs[0].run_id, "reused")]
    assert [r.run_id for r in report.deferred] == [runs[1].run_id]
    assert "1 run(s) still being trained by another runner" in report.summary()


@pytest.mark.timeout(60)  # a runner that waits instead would hang
def test_several_tables_take_a_held_table_last_and_then_wait_for_it(tmp_path, monkeypatch, capsys):
    import threading

    from assignlab.study.report import table
    from assignlab.study.run import owners
    held = TableSpec("held", "held", claims=(), rows=(RowSpec("H", hungarian()),))
    done = TableSpec("done", "done", claims=(), rows=(RowSpec("D", deta(4)),))
    paths = StudyPaths.make(tmp_path / "results", tmp_path / "cache")
    held_runs = _hold_every_run(held, paths)
    for run in plan_runs(done, "smoke"):
        paths.result_file("done", run.run_id).parent.mkdir(parents=True, exist_ok=True)
        paths.result_file("done", run.run_id).write_text(json.dumps({"metrics": {"AP": 30.0}, "rows": ["D"]}))
    monkeypatch.setattr(owners, "WAIT_POLL_S", 0.05)
    monkeypatch.setattr(table, "aggregate_table", lambda spec, *args, report, **kw: (spec.name, report))
    finishing = threading.Timer(0.5, lambda: [_finish_as_other_runner(run, paths) for run in held_runs])

    results = table.reproduce_tables([held, done], "smoke", results_dir=paths.results_dir, cache_dir=paths.cache_dir,
                                     progress=False)
    first = next(results)
    assert first[0] == "done" and "held: 1 run(s) being trained by another runner" in capsys.readouterr().out
    finishing.start()  # the other runner finishes only now: the held table must be waited for
    (name, report), = list(results)
    assert name == "held" and [(o.run.run_id, o.state) for o in report.outcomes] == [
        (run.run_id, "reused") for run in held_runs] and report.deferred == []


def test_a_preempted_job_is_requeued_and_resumes_to_the_uninterrupted_result(tmp_path):
    """Exact equality on one machine: the requeued job and the uninterrupted run both train at one
    thread (keep ``threads=1`` on both sides)."""
    config = preset("smoke").override({"data.root": str(tmp_path / "data"), "train.epochs": 2,
                                       "data.synth_train_images": 96})
    request = TrainRequest(config.to_json(), 0, str(tmp_path / "preempted"), threads=1)
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit" / "%j", cluster="local")
    executor.update_parameters(timeout_min=10)
    job = executor.submit(TrainTask(request))
    checkpoint, claim_file = tmp_path / "preempted" / "checkpoint.pth", tmp_path / "preempted" / "claim.json"
    deadline = time.time() + 120
    while not checkpoint.exists():  # the first epoch is done
        assert time.time() < deadline and not job.done(), job.stderr()
        time.sleep(0.02)
    claim = json.loads(claim_file.read_text())
    assert claim["executor"] == "submitit-local" and claim["job_id"] == job.job_id
    os.kill(claim["pid"], signal.SIGUSR2)  # what Slurm sends before pre-emption or the time limit
    answer = job.results()[0]
    assert answer["state"] == "trained"
    run_dir = Path(request.run_dir)
    events = [e for e in _events(run_dir) if e["event"] in ("start", "resume", "epoch")]
    assert [(e["event"], e.get("epoch")) for e in events] == [("start", None), ("epoch", 0), ("resume", 1),
                                                                 ("epoch", 1)]
    assert "SIGUSR2" in job.stderr() and not claim_file.exists()

    threads = torch.get_num_threads()
    try:
        uninterrupted = TrainTask(TrainRequest(config.to_json(), 0, str(tmp_path / "straight"), threads=1))()
    finally:
        torch.set_num_threads(threads)
    assert answer["result"]["metrics"] == uninterrupted["result"]["metrics"]
    assert _losses(answer["result"]) == _losses(uninterrupted["result"])


def test_status_shows_each_run_finished_running_failed_interrupted_or_missing(tmp_path, capsys):
    results, cache = tmp_path / "results", tmp_path / "cache"
    runs = plan_runs("deta_table5", "smoke")
    assert len(runs) >= 5
    paths = StudyPaths.make(results, cache)
    finished, running, failed, interrupted, stale = runs[:5]
    paths.result_file("deta_table5", finished.run_id).parent.mkdir(parents=True)
    paths.result_file("deta_table5", finished.run_id).write_text(json.dumps({"metrics": {"AP": 1.0}}))
    locks.acquire(paths.run_dir(running.run_id), locks.Owner("slurm:991", "slurm", "991", socket.gethostname(),
                                                                 os.getpid()))
    paths.run_dir(failed.run_id).mkdir(parents=True)
    (paths.run_dir(failed.run_id) / "error.json").write_text(json.dumps({"error": "ValueError: broken data"}))
    paths.run_dir(interrupted.run_id).mkdir(parents=True)
    (paths.run_dir(interrupted.run_id) / "checkpoint.pth").write_bytes(b"")
    old = time.time() - 10_000
    paths.run_dir(stale.run_id).mkdir(parents=True)
    (paths.run_dir(stale.run_id) / "claim.json").write_text(
        json.dumps(locks.RunLock("slurm:5", "slurm", "5", "node9", 1, old, old).to_dict()))
    (paths.run_dir(stale.run_id) / "checkpoint.pth").write_bytes(b"")

    assert cli_main(["study", "status", "--table", "deta_table5", "--profile", "smoke", "--results-dir", str(results),
                     "--cache-dir", str(cache)]) == 0
    lines = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if len(line.split()) > 1
             and line.split()[1] in {r.run_id for r in runs}}
    assert len(lines) == len(runs)
    assert lines[finished.run_id].startswith("finished")
    assert lines[running.run_id].startswith("running") and f"slurm job 991 (pid {os.getpid()}" in lines[running.run_id]
    assert lines[failed.run_id].startswith("failed") and "broken data" in lines[failed.run_id]
    assert str(paths.run_dir(failed.run_id) / "train.log") in lines[failed.run_id]
    assert lines[interrupted.run_id].startswith("interrupted") and "resumable" in lines[interrupted.run_id]
    assert lines[stale.run_id].startswith("interrupted") and "no heartbeat" in lines[stale.run_id]
    assert all(lines[r.run_id].startswith("missing") for r in runs[5:])
