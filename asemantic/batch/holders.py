"""Who holds a supervisor lease, and whether that process is still alive.

A supervisor names itself in the lease as ``host:pid:start:random``: the host name, its
process id, the process's start time (in clock ticks since boot, as Linux's
``/proc/<pid>/stat`` gives it; 0 where that is not known) and a random tag (so two
supervisors of one process differ).

Decisions:

* **A dead holder is detected on the same host only**, and only for certain: the host
  is this one, the process is not this one, and either no process has that id (or it
  is a zombie: killed, not yet reaped by its parent), or one has that id but started at
  another time (the id was reused). Anything else (another host, an owner named
  otherwise, a process we may not look at) counts as alive: its lease is waited for.
* Then the new supervisor takes the lease over at once instead of waiting up to
  ``lease_ttl`` for it to expire (:mod:`asemantic.batch.lease`): ``kill -9`` and an
  immediate restart (systemd's ``Restart=always``) resume within seconds.
* Nothing here writes anything: it reads ``/proc`` and sends signal 0.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Holder", "holder_is_dead", "owner_id", "parse_owner", "process_start"]

_OWNER = re.compile(r"^(?P<host>[^:]+):(?P<pid>\d+):(?P<start>\d+):(?P<tag>[0-9a-f]+)$")


@dataclass(frozen=True, slots=True)
class Holder:
    """A lease owner as :func:`owner_id` wrote it."""

    host: str
    pid: int
    start: int


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if unknown."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    try:
        return int(fields[19])  # field 22 of stat; fields[0] is field 3 (the state)
    except ValueError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def owner_id() -> str:
    """This process's name for the lease (see the module doc)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start(pid) or 0}:{uuid.uuid4().hex[:8]}"


def parse_owner(owner: str) -> Holder | None:
    """The host, pid and start time of an owner named by :func:`owner_id`, or None."""
    match = _OWNER.match(owner)
    if match is None:
        return None
    return Holder(host=match["host"], pid=int(match["pid"]), start=int(match["start"]))


def holder_is_dead(owner: str) -> bool:
    """Whether the lease's owner is certainly a dead process of this host."""
    holder = parse_owner(owner)
    if holder is None or holder.host != socket.gethostname() or holder.pid == os.getpid():
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists (another user's): its start time still tells
    except OSError:
        return False
    fields = _stat_fields(holder.pid)
    if fields is None:
        return False
    if fields[0] in ("Z", "X"):  # a zombie, or dead
        return True
    start = process_start(holder.pid)
    return bool(holder.start) and start is not None and start != holder.start
