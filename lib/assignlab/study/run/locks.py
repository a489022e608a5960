"""Run locks (claim files): one per run, naming the process that trains it, so that runners sharing
one results store (several notebooks, several login nodes, Slurm jobs) never train the same run twice.

``<run folder>/claim.json`` holds the owner (a token: ``local:<host>:<pid>`` for a process,
``slurm:<job id>`` inside a submitit job, so that a requeued job finds its own claim again),
host, pid, executor, job id, start time and a heartbeat that a thread refreshes while the run trains.

A claim is *stale*, and the next runner takes it over, when its heartbeat is older than the stale
timeout (``stale_after_s``; default 10 minutes, or ``ASSIGNLAB_STALE_CLAIM_S``), or at once when it
names a process on this host that no longer exists.

The claim is created with ``O_CREAT | O_EXCL`` (atomic on local disks and on NFS v3+): of two
processes that claim a free run, exactly one succeeds. A stale claim is removed only by the holder
of the run's takeover lock (``.claim.json.takeover``, also created with ``O_EXCL``), and only if it
is still the claim judged stale; the claim is then created as above, so a takeover race has one
winner too. A takeover lock older than ``TAKEOVER_LOCK_STALE_S`` (its holder died within the few
milliseconds it holds it) is removed.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CLAIM_NAME = "claim.json"
STALE_ENV = "ASSIGNLAB_STALE_CLAIM_S"
DEFAULT_STALE_AFTER_S = 600.0
DEFAULT_HEARTBEAT_S = 30.0
TAKEOVER_LOCK_STALE_S = 60.0


def stale_after(seconds: float | None = None) -> float:
    """The stale-claim timeout: ``seconds``, else ``$ASSIGNLAB_STALE_CLAIM_S``, else 10 minutes."""
    if seconds is not None:
        value: Any = seconds
    else:
        value = os.environ.get(STALE_ENV, DEFAULT_STALE_AFTER_S)
    try:
        value = float(value)
    except ValueError:
        raise ValueError(f"{STALE_ENV}={value!r}: not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"the stale-claim timeout must be > 0 s, got {value}")
    return value


@dataclass(frozen=True)
class Owner:
    """Who claims: a token that stays the same over a requeue of the same job, and where it runs."""

    token: str
    executor: str        # "local" (a worker process), "slurm", or "submitit-<cluster>" (e.g. submitit-local)
    job_id: str | None
    host: str
    pid: int

    @classmethod
    def current(cls) -> "Owner":
        """This process; inside a submitit job the job id (the same after a requeue) is the token."""
        host, pid = socket.gethostname(), os.getpid()
        job = _submitit_job()
        if job is not None:
            cluster, job_id = job
            executor = cluster if cluster == "slurm" else f"submitit-{cluster}"
            return cls(f"{executor}:{job_id}", executor, job_id, host, pid)
        return cls(f"local:{host}:{pid}", "local", None, host, pid)


def _submitit_job() -> tuple[str, str] | None:
    """(cluster, job id) when this process is a submitit job, else None."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    try:
        import submitit

        env = submitit.JobEnvironment()
        return env.cluster, str(env.job_id)
    except Exception:  # not a complete submitit environment
        return None


@dataclass(frozen=True)
class RunLock:
    """The content of one ``claim.json``: who holds the run's lock, and since when."""

    owner: str
    executor: str
    job_id: str | None
    host: str
    pid: int
    started: float
    heartbeat: float

    def where(self) -> str:
        """Where the run trains, for ``study status``."""
        place = f"pid {self.pid} on {self.host}"
        if self.job_id is not None:
            return f"{self.executor} job {self.job_id} ({place})"
        return place

    def stale_reason(self, timeout_s: float, now: float | None = None) -> str | None:
        """Why this claim no longer holds its run, or None while it does."""
        now = time.time() if now is None else now
        if self.host == socket.gethostname() and not pid_alive(self.pid):
            return f"its process {self.pid} on {self.host} has ended"
        age = now - self.heartbeat
        if age > timeout_s:
            return f"no heartbeat for {age:.0f} s (timeout {timeout_s:.0f} s)"
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except PermissionError:  # exists, owned by another user
        return True
    except (OSError, TypeError, ValueError):
        return False
    return True


def claim_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CLAIM_NAME


def read_claim(run_dir: str | Path) -> RunLock | None:
    """The run's claim, or None when there is none.

    A file that is not (yet) a complete claim (its writer was stopped between create and write)
    reads as an anonymous claim whose heartbeat is the file's modification time.
    """
    path = claim_path(run_dir)
    try:
        text = path.read_text()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    parsed = _parse_claim(text)
    return parsed if parsed is not None else RunLock("unknown", "unknown", None, "unknown", -1, mtime, mtime)


def _parse_claim(text: str) -> RunLock | None:
    try:
        data = json.loads(text)
        return RunLock(**{name: data[name] for name in RunLock.__dataclass_fields__})
    except (json.JSONDecodeError, KeyError, TypeError):
        return None


def _new_claim(owner: Owner, started: float | None = None) -> RunLock:
    now = time.time()
    return RunLock(owner.token, owner.executor, owner.job_id, owner.host, owner.pid,
                   now if started is None else started, now)


def _create_exclusive(path: Path, claim: RunLock) -> bool:
    """Create ``path`` holding ``claim`` unless it exists (atomically); True when created."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(claim.to_dict(), indent=1))
        f.flush()
        os.fsync(f.fileno())
    return True


def _rewrite(path: Path, claim: RunLock) -> None:
    tmp = path.with_name(f".{path.name}.{claim.host}.{claim.pid}.tmp")
    tmp.write_text(json.dumps(claim.to_dict(), indent=1))
    tmp.replace(path)


def acquire(run_dir: str | Path, owner: Owner | None = None, stale_after_s: float | None = None) -> RunLock | None:
    """Claim the run in ``run_dir`` for ``owner`` (default: this process).

    Returns the claim, or None when another owner holds a live claim. A claim that ``owner`` already
    holds (a requeued job) is renewed; a stale one is taken over.
    """
    owner = owner or Owner.current()
    timeout = stale_after(stale_after_s)
    path = claim_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(5):  # a few rounds of losing races to other claimers
        claim = _new_claim(owner)
        if _create_exclusive(path, claim):
            return claim
        held = read_claim(run_dir)
        if held is None:
            continue  # released in between
        if held.owner == owner.token:
            renewed = _new_claim(owner, started=held.started)
            _rewrite(path, renewed)
            return renewed
        if held.stale_reason(timeout) is None:
            return None
        _remove_if_unchanged(path, held)
    return None


def _remove_if_unchanged(path: Path, judged: RunLock) -> None:
    """Remove the stale claim ``judged`` under the run's takeover lock, unless the claim file no
    longer holds it (another process took the run over first) or another process holds the lock."""
    lock = path.with_name(f".{path.name}.takeover")
    if not _create_exclusive(lock, judged):
        try:
            if time.time() - lock.stat().st_mtime > TAKEOVER_LOCK_STALE_S:
                lock.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        return
    try:
        if read_claim(path.parent) == judged:
            path.unlink(missing_ok=True)
    finally:
        lock.unlink(missing_ok=True)


def refresh(claim: RunLock, run_dir: str | Path) -> RunLock | None:
    """Renew the heartbeat of ``claim``; None when the run is no longer claimed by its owner."""
    held = read_claim(run_dir)
    if held is None or held.owner != claim.owner:
        return None
    renewed = RunLock(**{**claim.to_dict(), "heartbeat": time.time()})
    _rewrite(claim_path(run_dir), renewed)
    return renewed


def release(claim: RunLock, run_dir: str | Path) -> None:
    """Remove the claim if its owner still holds it."""
    held = read_claim(run_dir)
    if held is not None and held.owner == claim.owner:
        claim_path(run_dir).unlink(missing_ok=True)


class Heartbeat:
    """Refresh a claim every ``interval_s`` seconds from a daemon thread while in the ``with`` block."""

    def __init__(self, claim: RunLock, run_dir: str | Path, interval_s: float = DEFAULT_HEARTBEAT_S) -> None:
        self.claim, self.run_dir, self.interval_s = claim, Path(run_dir), interval_s
        self.lost = False  # set when another owner took the run over (our heartbeat was too old)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"claim-heartbeat-{self.run_dir.name}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            renewed = refresh(self.claim, self.run_dir)
            if renewed is None:
                self.lost = True
                return
            self.claim = renewed

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
