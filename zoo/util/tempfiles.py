"""Temp-file names that no other writer can share, on one machine or on a shared file system.

Every file zoo writes goes to a temp file beside its destination and is renamed into place. On
NFS or Lustre the locks that normally keep two writers apart may be broken (``flock`` silently
local, or failing with ENOLCK), and two hosts can run processes with the same pid. A name made of
host + pid + a random part means two writers never share a temp file, so a broken lock costs a
second download or extraction, never a file holding bytes from two writers. A leftover is judged
dead by its pid only on the host that wrote it; another host's leftover only by its age.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from pathlib import Path



def _host() -> str:
    """The host name, this boot of this machine, and this process's pid namespace: two machines
    (or containers) given the same host name are still different writers, as pids are only
    comparable within one kernel and one namespace. Made safe for a file name (no dots: they
    separate the name's parts)."""
    name = socket.gethostname() or "host"
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:  # differs per machine and per boot
            name += "-" + fh.read().strip().replace("-", "")[:12]
    except OSError:
        pass
    try:
        ns = os.readlink("/proc/self/ns/pid")  # 'pid:[4026531836]': the same on every host's root namespace
        name += "-" + "".join(c for c in ns if c.isdigit())
    except OSError:
        pass
    return re.sub(r"[^A-Za-z0-9-]", "-", name)


#: this host, boot and pid namespace: pids are compared only between writers with the same HOST
HOST = _host()
#: a leftover of another host untouched this long is taken for dead (a live writer keeps writing)
STALE_SECONDS = 24 * 3600.0


def temp_beside(path: str | os.PathLike, tag: str = "tmp") -> Path:
    """A hidden temp path in ``path``'s folder, unique to this process and call."""
    path = Path(path)
    return path.with_name(f".{path.name}.{unique_suffix()}.{tag}")


_OWNER = re.compile(r"\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}(\.[a-z]+)?$")
_LEGACY = re.compile(r"^\.incomplete-.+\.\d+$")  # zoo before 2026-11: pid only, host unknown


def owner_of(name: str) -> tuple[str, str] | None:
    """``(host, pid)`` from a name made by :func:`temp_beside` or :func:`unique_suffix`, else None."""
    m = _OWNER.search(name)
    return (m["host"], m["pid"]) if m else None


def unique_suffix() -> str:
    """``HOST.PID.RANDOM``: what makes a temp name this writer's alone (the pid is read each
    call: a forked worker has its own)."""
    return f"{HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


def pid_alive(text: str) -> bool:
    """Whether the process with this pid (as text) runs on this host; False for anything not a pid."""
    try:
        os.kill(int(text), 0)
    except (ValueError, ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def abandoned(path: Path, now: float | None = None) -> bool:
    """Whether the writer that named the temp file ``path`` is gone: a dead pid on this host, or,
    for another host (whose pids mean nothing here), no write for :data:`STALE_SECONDS`. False
    for a name zoo did not make."""
    found = owner_of(path.name)
    if found is None:
        if not _LEGACY.match(path.name):
            return False
        found = (None, "")  # an older zoo's name: no host in it, so judged by age alone
    host, pid = found
    if host == HOST:
        return not pid_alive(pid)
    try:
        idle = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return idle > STALE_SECONDS
