"""A backend wrapper that stops one thread at a named step, for deterministic race tests.

``Pausing(inner)`` behaves as `inner`; ``gate = backend.pause("put", "_log/", thread="gc")``
makes the next matching call in the thread named "gc" wait (``gate.reached`` is set) until
``gate.release()``, so a test can run another writer in that gap. ``backend.fail("put",
"_log/")`` makes the next matching call raise a StorageError instead (a request that failed).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from storage.errors import StorageError

WAIT_S = 30.0  # a gate never released is a broken test, not a hang


@dataclass
class Gate:
    op: str
    prefix: str
    thread: str | None
    fail: bool = False
    reached: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)
    used: bool = False

    def release(self) -> None:
        self.go.set()

    def wait_reached(self) -> None:
        assert self.reached.wait(WAIT_S), f"nothing reached {self.op} {self.prefix}"


class Pausing:
    """`inner` with gates (see the module docstring)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gates: list[Gate] = []
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def pause(self, op: str, prefix: str, thread: str | None = None) -> Gate:
        gate = Gate(op, prefix, thread)
        self.gates.append(gate)
        return gate

    def fail(self, op: str, prefix: str, thread: str | None = None) -> Gate:
        gate = Gate(op, prefix, thread, fail=True)
        self.gates.append(gate)
        return gate

    def _step(self, op: str, key: str) -> None:
        self.calls.append((op, key))
        name = threading.current_thread().name
        for gate in self.gates:
            if not gate.used and gate.op == op and key.startswith(gate.prefix) and \
                    gate.thread in (None, name):
                gate.used = True
                gate.reached.set()
                if gate.fail:
                    raise StorageError(f"store {self.inner.url}: injected failure at {op} {key}")
                assert gate.go.wait(WAIT_S), f"gate {op} {key} never released"

    def get(self, key: str, *args: Any, **kwargs: Any) -> Any:
        self._step("get", key)
        return self.inner.get(key, *args, **kwargs)

    def get_file(self, key: str, *args: Any, **kwargs: Any) -> Any:
        self._step("get_file", key)
        return self.inner.get_file(key, *args, **kwargs)

    def put(self, key: str, *args: Any, **kwargs: Any) -> Any:
        self._step("put", key)
        return self.inner.put(key, *args, **kwargs)

    def head(self, key: str, *args: Any, **kwargs: Any) -> Any:
        self._step("head", key)
        return self.inner.head(key, *args, **kwargs)

    def list(self, prefix: str, *args: Any, **kwargs: Any) -> Any:
        self._step("list", prefix)
        return self.inner.list(prefix, *args, **kwargs)

    def delete(self, key: str, *args: Any, **kwargs: Any) -> Any:
        self._step("delete", key)
        return self.inner.delete(key, *args, **kwargs)


def in_thread(name: str, target: Any, *args: Any) -> tuple[threading.Thread, list]:
    """Run `target(*args)` in a thread called `name`; the list gets its result or error."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(target(*args))
        except BaseException as error:  # the test inspects it
            outcome.append(error)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread, outcome
