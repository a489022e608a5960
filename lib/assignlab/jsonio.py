"""Files that readers never see half-written (:func:`write_atomically`, :func:`write_json_atomic`)
and JSON read with errors that name the file (:func:`read_json`).

Used by the engine (``result.json``, ``checkpoint.pth``, ``source.diff``) and the study
(``results/runs/<table>/<run-id>.json``).
Several processes, on several hosts, may write into the same folder: each writes its own temporary
file ``.<name>.<host>.<pid>.tmp`` beside the target and renames it over the target (atomic on a
local disk and on NFS), so the target is always either the previous file or the complete new one.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, Callable


def tmp_path_for(path: Path) -> Path:
    """The temporary file this process writes before renaming it to ``path``."""
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file in ``path``'s folder (created if needed), then rename
    it to ``path``; returns ``path``.

    On failure (disk full, no permission, ...) the temporary file is removed, ``path`` keeps its
    previous content (or stays absent), and an OSError of the same errno is raised whose message
    names ``path`` and what went wrong, e.g. ``could not write results/runs/t/x.json: No space left
    on device (the previous file, if any, is unchanged)``; other exceptions pass through.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(err, OSError):
            reason = err.strerror or (os.strerror(err.errno) if err.errno else str(err))
            message = f"could not write {path}: {reason} (the previous file, if any, is unchanged)"
            raise (OSError(err.errno, message) if err.errno else OSError(message)) from err
        raise
    return path


def write_json_atomic(path: str | Path, payload: Any) -> None:
    """Write ``payload`` as JSON to ``path`` with :func:`write_atomically` (a payload that is not
    JSON fails before any file is touched)."""
    text = json.dumps(payload, indent=1, sort_keys=True)
    write_atomically(path, lambda tmp: tmp.write_text(text))


def remove_stale_tmp_files(folder: str | Path) -> list[Path]:
    """Remove the temporary files that processes of this host left in ``folder`` when they were
    killed in the middle of :func:`write_json_atomic` (their pid no longer exists); returns them."""
    removed = []
    for tmp in Path(folder).glob(f".*.{socket.gethostname()}.*.tmp"):
        pid = tmp.name[: -len(".tmp")].rsplit(".", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def read_json(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``. A file that is not valid JSON (truncated, damaged) or whose top
    level is not an object raises ValueError naming the file and what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (not UTF-8 text: {err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        text = err.doc.rstrip()
        hint = ("; the file is empty" if not text else
                "; it ends early (truncated?)" if not text.endswith(("}", "]")) or err.pos >= len(text) else "")
        raise ValueError(f"{path}: not valid JSON ({err}{hint})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data
