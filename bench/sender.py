"""The benchmarks' HTTP client, in a process of its own.

The fake Slack runs inside the benchmark's process. During a burst the job worker makes
hundreds of calls to it (confirmations, message updates), and its threads then compete
for the GIL with the threads timing our requests: a request's measured latency grew by
however long its thread waited for the interpreter, which the floor (no worker, no Slack
calls) never paid. Here the requests are sent, and timed, by a child process that does
nothing else: each request arrives with the moment it is due (the system-wide monotonic
clock), the child waits until then, sends it, and answers with the status, the body, when
it was sent and how long it took.

    with Sender() as sender:
        sim = Simulator(fake, url, transport=sender.send)
        with sender.due(time.monotonic() + 0.5):
            sim.click(...)  # sent by the child half a second from now
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from simulator.people import HttpAnswer

_HEADER = struct.Struct("!I")


def _send_frame(sock: socket.socket, data: dict[str, Any]) -> None:
    raw = json.dumps(data).encode()
    sock.sendall(_HEADER.pack(len(raw)) + raw)


def _read_frame(sock: socket.socket) -> dict[str, Any] | None:
    head = _read_exactly(sock, _HEADER.size)
    if head is None:
        return None
    (size,) = _HEADER.unpack(head)
    raw = _read_exactly(sock, size)
    return None if raw is None else dict(json.loads(raw))


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


class Sender:
    """The parent's side: `send` is a `Simulator` transport; `due` sets when the calling
    thread's requests go (default: at once)."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="cb-sender-")
        self.path = str(Path(self._dir.name) / "sender.sock")
        self._local = threading.local()
        self._child: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Sender:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "bench.sender", self.path],
            cwd=Path(__file__).resolve().parent.parent,
        )
        deadline = time.monotonic() + 15
        while not os.path.exists(self.path):
            if self._child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the benchmark's sender process did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._child is not None:
            self._child.terminate()
            self._child.wait(timeout=10)
        self._dir.cleanup()

    @contextlib.contextmanager
    def due(self, at: float) -> Iterator[None]:
        """Requests this thread sends inside the block go at `at` (time.monotonic())."""
        self._local.at = at
        try:
            yield
        finally:
            self._local.at = None

    def send(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> HttpAnswer:
        at = getattr(self._local, "at", None) or 0.0
        # Only the first request of a `due` block waits; the rest follow as answers come.
        self._local.at = None
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(self.path)
            _send_frame(
                sock,
                {
                    "url": url,
                    "body": body.decode("latin-1"),
                    "headers": dict(headers),
                    "timeout": timeout,
                    "at": at,
                },
            )
            reply = _read_frame(sock)
        if reply is None:
            return HttpAnswer(0, "", 0.0, "the sender process went away")
        return HttpAnswer(
            int(reply["status"]),
            str(reply["text"]),
            float(reply["elapsed"]),
            reply.get("error"),
            sent_at=float(reply["sent_at"]),
        )


# -- the child -----------------------------------------------------------------------------


def _post(request: dict[str, Any]) -> dict[str, Any]:
    delay = float(request["at"]) - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    http = urllib.request.Request(
        str(request["url"]),
        data=str(request["body"]).encode("latin-1"),
        headers=dict(request["headers"]),
        method="POST",
    )
    started = time.monotonic()
    status, text, error = 0, "", None
    try:
        with urllib.request.urlopen(http, timeout=float(request["timeout"])) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return {
        "status": status,
        "text": text,
        "elapsed": time.monotonic() - started,
        "sent_at": started,
        "error": error,
    }


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        request = _read_frame(self.request)
        if request is not None:
            _send_frame(self.request, _post(request))


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    request_queue_size = 1024


def main() -> None:
    path = sys.argv[1]
    with _Server(path + ".tmp", _Handler) as server:
        os.rename(path + ".tmp", path)  # the parent waits for the name: ready to serve
        server.serve_forever()


if __name__ == "__main__":
    main()
