"""A real S3 API on 127.0.0.1 for tests: moto in server mode, in a child process.

`S3Server()` starts moto's server (this file run as a script) on a free port and waits until it
answers; `bucket()` creates a fresh bucket with an unsigned PUT and returns its ``s3://`` URL;
`env` holds the standard AWS_* variables that point obstore at it; `close()` stops the
process by its pid. Its request log (one line per request, on stderr) goes to `log_path`,
so tests and benchmarks can count the GETs of a key.

moto checks a conditional write (``If-None-Match: *``, ``If-Match``) and stores the object
in separate steps, under no lock, in whichever of its request threads runs: two concurrent
create-only PUTs of one key can both be answered 200 (3 keys of 400 raced by 16 threads on a
loaded 2-core machine), so two store commits could take the same log entry and one be lost,
which real S3 never allows. `SerialWrites` makes moto handle conditional writes and deletes
one at a time, as S3 decides them atomically; reads and plain uploads stay concurrent.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class S3Server:
    """moto's S3 server on 127.0.0.1 (see the module docstring)."""

    def __init__(self, log_path: Path | None = None, auth_after: int | None = None) -> None:
        """`auth_after`: requests served before moto starts checking credentials (none of
        the AWS_* keys below is known to it, so every later request is refused)."""
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="moto-", suffix=".log")[1])
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "127.0.0.1", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=self._log,
            env={**os.environ, **({} if auth_after is None else
                                  {"INITIAL_NO_AUTH_ACTION_COUNT": str(auth_after)})})
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/", timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"moto did not start (log: {self.log_path})") from None
                time.sleep(0.1)
        self.env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint,
                    "AWS_ALLOW_HTTP": "true"}

    def bucket(self, name: str | None = None) -> str:
        """Create a new bucket; the store URL of a prefix inside it."""
        name = name or f"charlm-{secrets.token_hex(4)}"
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        urllib.request.urlopen(request, timeout=10).close()
        return f"s3://{name}/store"

    def gets(self, key_part: str) -> int:
        """How many GET requests for a path containing `key_part` the server answered."""
        text = self.log_path.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if '"GET /' in line and key_part in line)

    def close(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of `target_port` that stands in for an endpoint
    dying: the first request whose start contains `trigger` closes every connection and
    the listening socket for good (later connections are refused)."""

    def __init__(self, target_port: int, trigger: bytes) -> None:
        self.port = free_port()
        self.trigger = trigger
        self.cut = threading.Event()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(target_port,), daemon=True).start()

    def _accept(self, target_port: int) -> None:
        while not self.cut.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", target_port))
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False),
                             daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, watch: bool) -> None:
        try:
            while data := source.recv(65536):
                if watch and self.trigger in data:
                    target.sendall(data[: len(data) // 2])  # half a request, then nothing
                    self.close()
                    return
                target.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.cut.set()
        for sock in [self._listener, *self._sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class SerialWrites:
    """WSGI middleware: conditional requests and DELETEs reach `app` one at a time, each
    with its whole response made before the next starts, so that moto's check of a condition
    and its write are one step (see the module docstring)."""

    def __init__(self, app) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        if not ("HTTP_IF_MATCH" in environ or "HTTP_IF_NONE_MATCH" in environ
                or environ.get("REQUEST_METHOD") == "DELETE"):
            return self.app(environ, start_response)
        with self.lock:
            return list(self.app(environ, start_response))


def serve(host: str, port: int) -> None:
    """Run moto's server, as ``python -m moto.server`` does, with `SerialWrites`."""
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(port))  # as moto.server: its URLs name the port
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(host, port, SerialWrites(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
