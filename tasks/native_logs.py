"""Keep TensorFlow's native start-up chatter out of what users read.

TensorFlow's C++ code writes lines such as ``WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR``, ``I0000 00:00:... port.cc:153]
oneDNN custom operations are on ...``, ``... cudart_stub.cc:31] Could not find cuda
drivers ...`` and ``E0000 ... failed call to cuInit`` straight to file descriptor 2, before
Python's logging exists and whatever TF_CPP_MIN_LOG_LEVEL says. Python cannot intercept
them at a higher level, so `filter_native_logs` works at the process level: it points fd 2
at a pipe drained by a small helper process (this module run as a program) that drops lines
in those formats (absl's and older TensorFlow's info, warning and error lines; fatal lines
still pass) and forwards everything else, unchanged and in order, to the original stderr.
A process rather than a thread, because Prefect's runner replaces the process that ran the
pull steps with the flow's engine (exec): fd 2 survives that, a thread would not.

It must run before TensorFlow is imported, and it takes over the whole process's stderr,
so only a process's entry point calls it: the `charlm` command (unless ``--debug``) and
Prefect flow runs started from a deployment (the pull step `pull_step` in prefect.yaml,
which runs before the flow's module, and TensorFlow with it, is imported). Importing this
module does nothing.
"""

from __future__ import annotations

import atexit
import os
import re
import subprocess
import sys
import threading
from typing import TextIO

__all__ = ["filter_native_logs", "is_native_log_line", "pull_step", "terminal_stderr"]

_NATIVE_LINE = re.compile(
    rb"[IWE]\d{4} [\d:.]+\s+\d+ \S+:\d+\] "  # absl: I0000 00:00:1796.25  4916 port.cc:153]
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+:\d+\] "  # TensorFlow < 2.16
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    rb"STDERR\r?$"
    rb"|To enable the following instructions: .*rebuild TensorFlow with the appropriate "
    rb"compiler flags\.\r?$"  # the second line of the CPU feature guard's message
)
# How a native line can start: a line that cannot is forwarded before its end arrives (a
# progress bar redraws its line without ever ending it).
_LONG_STARTS = (b"WARNING: All log messages before absl", b"To enable the following instr")
_PIECE = re.compile(rb"[^\n]*\n|[^\n]+")

_lock = threading.Lock()  # filter_native_logs may be called from several threads
_installed = False
_original: int | None = None  # the real stderr while filtering
_terminal: TextIO | None = None


def is_native_log_line(line: bytes) -> bool:
    """Whether `line` (without its newline) is TensorFlow native chatter to drop."""
    return _NATIVE_LINE.match(line) is not None


def _may_become_native(start: bytes) -> bool:
    if start[:1] in (b"I", b"W", b"E") and (len(start) == 1 or start[1:2].isdigit()):
        return True
    if start[:1].isdigit():
        return True
    return any(s.startswith(start[: len(s)]) for s in _LONG_STARTS)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _drain(read_fd: int, out_fd: int) -> None:
    """Copy `read_fd` to `out_fd` until EOF, native log lines left out."""
    held = b""  # the start of a line that may still turn out to be native chatter
    passing = False  # the current line is being forwarded as it arrives
    while True:
        try:
            chunk = os.read(read_fd, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        out = []
        for piece in _PIECE.findall(chunk):
            complete = piece.endswith(b"\n")
            if passing:
                out.append(piece)
                passing = not complete
                continue
            held += piece
            if complete:
                if not is_native_log_line(held[:-1]):
                    out.append(held)
                held = b""
            elif not _may_become_native(held):
                out.append(held)
                held, passing = b"", True
        _write_all(out_fd, b"".join(out))
    if held and not is_native_log_line(held):
        _write_all(out_fd, held)
    os.close(read_fd)


def filter_native_logs() -> None:
    """Filter TensorFlow's native log lines out of this process's stderr (fd 2), from now
    until exit, for its children and for a program it execs into. Idempotent; call it before
    importing TensorFlow."""
    global _installed, _original
    with _lock:
        if _installed:
            return
        sys.stderr.flush()
        original = _original = os.dup(2)
        read_fd, write_fd = os.pipe()
        # Its own session: a Ctrl-C meant for charlm must not kill the filter before the last
        # lines pass; it ends when the last writer of the pipe is gone.
        helper = subprocess.Popen([sys.executable, "-m", __name__], stdin=read_fd,
                                  stdout=original, stderr=original, start_new_session=True)
        os.close(read_fd)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        _installed = True

    def restore() -> None:
        # Everything written so far must reach the terminal before the process ends:
        # closing this process's write end lets the helper drain the pipe and stop.
        sys.stderr.flush()
        os.dup2(original, 2)
        try:
            helper.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass  # a child still holds the pipe; the helper outlives us and finishes later

    atexit.register(restore)


def terminal_stderr() -> TextIO | None:
    """A text stream on the user's terminal (stderr, unfiltered), or None when stderr is not
    a terminal: for a progress bar, which redraws its line and must know the terminal."""
    global _terminal
    if _original is None:
        return sys.stderr if sys.stderr.isatty() else None
    if _terminal is None and os.isatty(_original):
        _terminal = os.fdopen(os.dup(_original), "w", buffering=1)
    return _terminal


def pull_step() -> dict[str, str]:
    """A Prefect deployment pull step (prefect.yaml) that calls `filter_native_logs`."""
    filter_native_logs()
    return {}


if __name__ == "__main__":  # the helper process: stdin is the pipe, stdout the real stderr
    _drain(0, 1)
