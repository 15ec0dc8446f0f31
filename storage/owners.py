"""Who owns a temporary file or staging directory in the store: a host id and a process id.

Crash clean-up (storage.staging) removes what a killed writer left behind. A process id
alone cannot say whether that writer is dead once the store lives on a volume that several
hosts (or containers) share: pid 4242 on one host means nothing on another, so asking this
host's kernel about it would delete another host's work in progress. Every owned name
therefore carries an *owner tag* ``<pid>@<host id>``. A leftover is removed only when its
owner is provably gone: its host is this host and the pid is dead; otherwise (another host,
or an old name with a bare pid, whose host is unknown) only once nothing in it changed for
`FOREIGN_LEASE_S`, a lease far longer than any write of a temporary or staging directory
lasts and than clocks of hosts sharing a volume disagree.

The host id is ``$CHARLM_HOST_ID`` when set (tests stand in for two hosts with it; a
deployment may pin one per machine), else the host name plus a digest of what makes a pid
meaningful: the machine id, the kernel's boot id (pids restart at every boot) and the pid
namespace (two containers on one kernel do not see each other's pids).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from storage.errors import StorageError

__all__ = ["FOREIGN_LEASE_S", "HOST_ID_ENV", "Owner", "host_id", "owner_tag", "parse_owner",
           "pid_alive"]

HOST_ID_ENV = "CHARLM_HOST_ID"
# Another host's leftovers are removed only after a day untouched: temporaries live for
# milliseconds and staging directories for one publish, and a day also covers clock skew.
FOREIGN_LEASE_S = 24 * 3600.0

# No dots (names are split on them) and nothing a filesystem could mangle.
_HOST_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_IDENTITY_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id",
                   "/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class Owner:
    pid: int
    host: str | None  # None: an old name with a bare pid, written before host ids existed


def host_id() -> str:
    """This host's id: $CHARLM_HOST_ID, else derived from the host (see the module docstring)."""
    pinned = os.environ.get(HOST_ID_ENV)
    if pinned is None:
        return _derived_host_id()
    if _HOST_ID_RE.fullmatch(pinned) is None:
        raise StorageError(f"bad {HOST_ID_ENV} {pinned!r}: use 1-64 characters from A-Z, a-z, "
                           "0-9, '_' and '-'")
    return pinned


@functools.cache
def _derived_host_id() -> str:
    identity = []
    for name in _IDENTITY_FILES:
        try:
            identity.append(Path(name).read_text(encoding="ascii").strip())
        except (OSError, UnicodeDecodeError):
            identity.append("")
    try:
        identity.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        identity.append("")
    name = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"
    digest = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:8]
    return f"{name}-{digest}"


def owner_tag() -> str:
    """This process's owner tag, ``<pid>@<host id>``, for names of things it may leave behind."""
    return f"{os.getpid()}@{host_id()}"


def parse_owner(tag: str) -> Owner | None:
    """The owner a tag names (a bare pid from older versions too); None if it names none."""
    pid, at, host = tag.partition("@")
    if not pid.isdigit() or (at and _HOST_ID_RE.fullmatch(host) is None):
        return None
    return Owner(int(pid), host if at else None)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (a process we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's live process, or nonsense: not provably dead
    return True
