"""Where the runs of a table train: ``local`` worker processes, or ``slurm``: one submitit job per run.

Every run, whatever the executor, is trained by a :class:`TrainTask`: it claims the run folder
(:mod:`assignlab.study.run.locks`), keeps the claim's heartbeat while it trains, and trains through
``train_run``, which resumes from the folder's ``checkpoint.pth``. When another runner holds a live
claim on the run, the task does not train and answers ``{"state": "busy"}``.

On Slurm (through submitit):

* A job that Slurm pre-empts or whose time limit comes receives ``USR2`` ahead of time; submitit
  calls :meth:`TrainTask.checkpoint`, which stops the training and resubmits the same task, and
  requeues the job. The requeued job has the same job id, so it finds its own claim and resumes
  from the last epoch's checkpoint: finished epochs are neither lost nor trained again (the epoch
  that was cut short restarts from its beginning, with the same data order and RNG states).
* A run with one GPU trains inside the job's process. A run with several GPUs or nodes gets one
  Slurm task per node, and each task starts ``torchrun`` for the GPUs of its node, joined by the
  c10d rendezvous at the first node of the job. ``torchrun`` sets RANK / LOCAL_RANK / WORLD_SIZE
  for ``train_run``; its elastic agent supervises the GPU processes of the node; and the command
  is the one a user types to train by hand (README: "Running the study on a Slurm cluster"). Only the first task claims the run;
  the others wait until the claim names their job.

Slurm parameters (:class:`SlurmSettings`) come from a JSON or YAML file and/or the environment
variables ``ASSIGNLAB_SLURM_<FIELD>`` (e.g. ``ASSIGNLAB_SLURM_PARTITION=gpu``); see the README, "Running the study on a Slurm cluster".
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import typing
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import submitit

from assignlab.config import coerce_value
from assignlab.engine.files import RESULT_NAME
from assignlab.jsonio import read_json, write_json_atomic
from assignlab.study.run import locks

EXECUTORS = ("local", "slurm")
ERROR_NAME = "error.json"
TRAIN_LOG_NAME = "train.log"
CONFIG_NAME = "config.json"
SLURM_CONFIG_ENV = "ASSIGNLAB_SLURM_CONFIG"
SLURM_ENV_PREFIX = "ASSIGNLAB_SLURM_"


# ----------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class SlurmSettings:
    """What each run's Slurm job asks for, and how the runner talks to Slurm."""

    partition: str | None = None
    gpus_per_node: int = 1
    nodes: int = 1
    time_min: int = 24 * 60          # the job's time limit; the run is requeued when it is reached
    account: str | None = None
    constraint: str | None = None
    cpus_per_task: int = 8           # CPU cores per node (one task per node)
    mem_gb: float | None = None      # memory per node; None: the partition's default
    max_requeues: int = 3            # time-limit requeues per run (pre-emptions do not count)
    signal_delay_s: int = 120        # USR2 this long before the time limit
    rdzv_port: int = 29500           # the c10d rendezvous port on the job's first node (several nodes)
    setup: tuple[str, ...] = ()      # shell lines run before the job (module load, conda activate)
    folder: str | None = None        # submitit's job files and logs; default: <cache>/../submitit
    cluster: str = "slurm"           # submitit cluster: "slurm", or "local" (same code path, this machine)
    poll_s: float = 10.0             # how often the runner looks at its jobs

    def __post_init__(self) -> None:
        for name in ("gpus_per_node", "nodes", "time_min", "cpus_per_task", "max_requeues"):
            if getattr(self, name) < (0 if name in ("gpus_per_node", "max_requeues") else 1):
                raise ValueError(f"slurm setting {name} = {getattr(self, name)} is out of range")

    @property
    def processes(self) -> int:
        return max(1, self.gpus_per_node) * self.nodes

    def executor_parameters(self, job_name: str) -> dict[str, Any]:
        """Parameters for ``submitit.AutoExecutor.update_parameters``."""
        params: dict[str, Any] = {
            "name": job_name, "timeout_min": self.time_min, "nodes": self.nodes, "tasks_per_node": 1,
            "cpus_per_task": self.cpus_per_task, "gpus_per_node": self.gpus_per_node,
            "slurm_signal_delay_s": self.signal_delay_s,
        }
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        for key in ("partition", "account", "constraint"):
            if getattr(self, key) is not None:
                params[f"slurm_{key}"] = getattr(self, key)
        if self.setup:
            params["slurm_setup"] = list(self.setup)
        return params


def load_slurm_settings(source: SlurmSettings | Mapping[str, Any] | str | Path | None = None,
                        environ: Mapping[str, str] | None = None) -> SlurmSettings:
    """The Slurm settings: the defaults, then a JSON/YAML file (``source`` when it is a path, else
    ``$ASSIGNLAB_SLURM_CONFIG``), then ``ASSIGNLAB_SLURM_<FIELD>`` variables, then ``source`` when it
    is a mapping. Unknown fields and bad values are errors naming the file or variable."""
    if isinstance(source, SlurmSettings):
        return source
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    config_file = source if isinstance(source, (str, Path)) else environ.get(SLURM_CONFIG_ENV)
    if config_file:
        for key, value in _read_settings_file(Path(config_file)).items():
            values[key], origin[key] = value, f"{config_file}: field {key!r}"
    fields = {f.name: f for f in dataclasses.fields(SlurmSettings)}
    types = typing.get_type_hints(SlurmSettings)
    for name in fields:
        variable = SLURM_ENV_PREFIX + name.upper()
        if variable in environ:
            values[name], origin[name] = environ[variable], f"environment variable {variable}"
    if isinstance(source, Mapping):
        for key, value in source.items():
            values[key], origin[key] = value, f"slurm setting {key!r}"
    converted = {}
    for key, value in values.items():
        if key not in fields:
            raise ValueError(f"{origin[key]}: unknown slurm setting (known: {', '.join(fields)})")
        converted[key] = _convert(value, types[key], fields[key].type, origin[key])
    try:
        return SlurmSettings(**converted)
    except ValueError as err:
        raise ValueError(f"{config_file or 'slurm settings'}: {err}") from None


def _read_settings_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: slurm settings file not found")
    text = path.read_text()
    try:
        if path.suffix in (".yml", ".yaml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as err:  # the parsers' errors differ
        raise ValueError(f"{path}: not valid {'YAML' if path.suffix in ('.yml', '.yaml') else 'JSON'} ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of slurm settings, got {type(data).__name__}")
    return data


def _convert(value: Any, annotation: Any, kind: str, origin: str) -> Any:
    """``value`` as a setting of type ``annotation`` (written ``kind``), converted as config fields are
    (:func:`assignlab.config.coerce_value`). Besides: None, "", "none" and "null" unset an optional
    setting; a text setting takes any scalar as text; a list setting given otherwise than as a list is
    text whose ';' separates the items."""
    optional = type(None) in typing.get_args(annotation)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        if optional:
            return None
        raise ValueError(f"{origin}: a value is required")
    target = next(a for a in typing.get_args(annotation) if a is not type(None)) if optional else annotation
    given = value
    if target is str and not isinstance(value, str):
        value = str(value)
    elif typing.get_origin(target) is tuple and not isinstance(value, (list, tuple)):
        value = [s for s in str(value).split(";") if s.strip()]
    try:
        return coerce_value(value, target, origin)
    except (TypeError, ValueError):
        raise ValueError(f"{origin}: {given!r} is not a valid {kind}") from None


# --------------------------------------------------------------------------------------- task
@dataclass(frozen=True)
class TrainRequest:
    """One run to train: its config, seed and folder, and the processes to train it with."""

    config_json: str
    seed: int
    run_dir: str
    device: str = "cpu"
    max_steps_per_epoch: int | None = None
    threads: int | None = None           # torch threads (in-process training)
    gpus_per_node: int = 0
    nodes: int = 1
    rdzv_port: int = 29500
    stale_after_s: float | None = None
    heartbeat_s: float = locks.DEFAULT_HEARTBEAT_S

    @property
    def distributed(self) -> bool:
        return self.gpus_per_node > 1 or self.nodes > 1


class TrainTask(submitit.helpers.Checkpointable):
    """Claim, then train (or resume) one run; a submitit job function and a local worker function.

    Returns ``{"state": "trained", "result": <result.json>}``, ``{"state": "finished", ...}`` when the
    folder already held the result, or, when another owner holds a live claim,
    ``{"state": "busy", "claim": <claim.json>}``. An exception leaves ``error.json`` (the
    message and the log path) in the run folder and is raised again.
    """

    def __init__(self, request: TrainRequest) -> None:
        self.request = request
        self._preempted = False
        self._child: subprocess.Popen | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"request": self.request}  # a live process handle does not travel with the job

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["request"])

    def __call__(self) -> dict[str, Any]:
        request = self.request
        folder = Path(request.run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        if _job_rank() != 0:
            return self._follow_first_task(folder)
        done = _finished_result(folder)
        if done is not None:  # trained by another runner meanwhile
            return {"state": "finished", "result": done}
        claim = locks.acquire(folder, stale_after_s=request.stale_after_s)
        if claim is None:
            held = locks.read_claim(folder)
            return {"state": "busy", "claim": held.to_dict() if held else None}
        try:
            with locks.Heartbeat(claim, folder, request.heartbeat_s):
                (folder / ERROR_NAME).unlink(missing_ok=True)
                with open(folder / TRAIN_LOG_NAME, "a") as log, redirect_stdout(log), redirect_stderr(log):
                    try:
                        result = self._train(folder, log)
                    except Exception as err:
                        traceback.print_exc()
                        _write_error(folder, f"{type(err).__name__}: {err}")
                        raise
        finally:
            if not self._preempted:  # a requeued job keeps its claim and finds it again
                locks.release(claim, folder)
        return {"state": "trained", "result": result}

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on pre-emption or time limit: stop, and resubmit the same task.

        Nothing needs saving here: ``train_run`` writes ``checkpoint.pth`` after every epoch and
        the requeued task resumes from it.
        """
        self._preempted = True
        if self._child is not None and self._child.poll() is None:
            self._child.send_signal(signal.SIGTERM)
            try:
                self._child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._child.kill()
        return submitit.helpers.DelayedSubmission(TrainTask(self.request))

    # ----------------------------------------------------------------------------- training
    def _train(self, folder: Path, log) -> dict[str, Any]:
        from assignlab.config import Config

        request = self.request
        config = Config.from_json(request.config_json)
        if not request.distributed:
            import torch

            from assignlab.engine.run import train_run

            if request.threads:
                torch.set_num_threads(request.threads)
            result = train_run(config, request.seed, folder, device=request.device, progress=False,
                               max_steps_per_epoch=request.max_steps_per_epoch)
            if result is None:
                raise RuntimeError("training stopped before its last epoch")
            return result
        (folder / CONFIG_NAME).write_text(request.config_json)
        self._run_torchrun(folder, log)
        result = _finished_result(folder)
        if result is None:
            raise RuntimeError(f"torchrun ended without {folder / RESULT_NAME}; log: {folder / TRAIN_LOG_NAME}")
        return result

    def _run_torchrun(self, folder: Path, log) -> None:
        command = torchrun_command(self.request, folder, _rendezvous_host(), _job_id())
        print("$ " + " ".join(command), flush=True)
        log.flush()
        self._child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        code = self._child.wait()
        if code != 0 and not self._preempted:
            raise RuntimeError(f"torchrun exited with code {code}; log: {folder / TRAIN_LOG_NAME}")

    def _follow_first_task(self, folder: Path) -> dict[str, Any]:
        """Another node of a multi-node job: wait until the first task has claimed the run for
        this job, then join the rendezvous; stand down when someone else holds it."""
        token = locks.Owner.current().token
        deadline = time.time() + 600
        while time.time() < deadline:
            done = _finished_result(folder)
            if done is not None:
                return {"state": "trained", "result": done}
            held = locks.read_claim(folder)
            if held is not None and held.owner == token:
                with open(folder / f"train.node{_job_rank()}.log", "a") as log:
                    self._run_torchrun(folder, log)
                return {"state": "trained", "result": _finished_result(folder)}
            if held is not None and held.stale_reason(locks.stale_after(self.request.stale_after_s)) is None:
                return {"state": "busy", "claim": held.to_dict()}
            time.sleep(2)
        raise RuntimeError(f"the first task of job {_job_id()} did not claim {folder} within 10 minutes")


def torchrun_command(request: TrainRequest, folder: Path, master: str, job_id: str) -> list[str]:
    """``python -m torch.distributed.run ... -m assignlab train`` for the GPUs of this node.

    One node: ``--standalone`` (a free local port, so jobs sharing a node do not collide).
    Several: c10d rendezvous at ``master:rdzv_port``, keyed by the job id.
    """
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={max(1, request.gpus_per_node)}"]
    if request.nodes == 1:
        command.append("--standalone")
    else:
        command += [f"--nnodes={request.nodes}", "--rdzv_backend=c10d",
                    f"--rdzv_endpoint={master}:{request.rdzv_port}", f"--rdzv_id={job_id}"]
    command += ["-m", "assignlab", "train", "--config", str(folder / CONFIG_NAME), "--seed", str(request.seed),
                "--out", str(folder), "--device", request.device, "--no-progress"]
    if request.max_steps_per_epoch is not None:
        command += ["--max-steps-per-epoch", str(request.max_steps_per_epoch)]
    return command


def _finished_result(folder: Path) -> dict[str, Any] | None:
    path = folder / RESULT_NAME
    return read_json(path) if path.exists() else None


def _write_error(folder: Path, message: str) -> None:
    write_json_atomic(folder / ERROR_NAME, {"error": message, "log": str(folder / TRAIN_LOG_NAME), "time": time.time()})


def _job_env() -> submitit.JobEnvironment | None:
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    try:
        return submitit.JobEnvironment()
    except Exception:  # not a complete submitit environment
        return None


def _job_rank() -> int:
    env = _job_env()
    return env.global_rank if env is not None else 0


def _job_id() -> str:
    env = _job_env()
    return str(env.job_id) if env is not None else str(os.getpid())


def _rendezvous_host() -> str:
    env = _job_env()
    return env.hostnames[0] if env is not None else "localhost"


# ---------------------------------------------------------------------------- slurm runner
@dataclass
class TaskEnd:
    """How one submitted task ended: "trained" or "finished" (result), "busy" (claim), or "failed" (error)."""

    key: str
    state: str
    result: dict[str, Any] | None = None
    claim: dict[str, Any] | None = None
    error: str | None = None
    job_log: str | None = None


@dataclass
class SubmititRunner:
    """Submit one job per request and wait for them (``cluster`` "slurm", or "local" for tests)."""

    settings: SlurmSettings
    folder: Path
    jobs: dict[str, Any] = field(default_factory=dict)

    def make_executor(self) -> submitit.AutoExecutor:
        try:
            return submitit.AutoExecutor(folder=self.folder / "%j", cluster=self.settings.cluster,
                                         slurm_max_num_timeout=self.settings.max_requeues)
        except RuntimeError as err:  # no sbatch/srun on this machine
            raise RuntimeError(f"executor 'slurm': {err} Start the runner on a machine that can submit Slurm "
                               "jobs, or set the slurm setting cluster: local to run the jobs here.") from None

    def submit(self, requests: Mapping[str, TrainRequest], name: Callable[[str], str] = lambda key: key) -> None:
        executor = self.make_executor()
        for key, request in requests.items():
            params = self.settings.executor_parameters(f"assignlab-{name(key)}")
            if self.settings.cluster != "slurm":  # submitit's local executor: one node, no slurm_* keys
                params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
            executor.update_parameters(**params)
            self.jobs[key] = executor.submit(TrainTask(request))

    def wait(self, on_end: Callable[[TaskEnd], None] | None = None) -> Iterable[TaskEnd]:
        """Yield each job's end as it comes."""
        pending = dict(self.jobs)
        while pending:
            for key, job in list(pending.items()):
                if not job.done():
                    continue
                del pending[key]
                yield self._end(key, job)
            if pending:
                time.sleep(self.settings.poll_s)

    @staticmethod
    def _end(key: str, job: Any) -> TaskEnd:
        log = str(job.paths.stderr)
        try:
            answer = job.results()[0]  # several tasks (nodes): the first task answers for the run
        except Exception as err:  # FailedJobError / UncompletedJobError carry the job's traceback
            last = [line for line in str(err).strip().splitlines() if line.strip()]
            return TaskEnd(key, "failed", error=f"job {job.job_id}: {last[-1] if last else type(err).__name__}",
                           job_log=log)
        return TaskEnd(key, answer["state"], result=answer.get("result"), claim=answer.get("claim"), job_log=log)
