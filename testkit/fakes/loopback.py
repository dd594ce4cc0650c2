"""What every fake HTTP server shares: a threaded server on 127.0.0.1 and the thread that
serves it, started and stopped by the test (or a `with` block)."""

from __future__ import annotations

import sys
import threading
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


class LoopbackServer(ThreadingHTTPServer):
    # Handler threads must not keep a finished test (or the interpreter) alive.
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients that timed out hang up
            super().handle_error(request, client_address)


class LoopbackHandler(BaseHTTPRequestHandler, ABC):
    """Hands each request's verb, path, headers and body to `_dispatch`; `_answer` replies."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    @abstractmethod
    def _dispatch(self, verb: str) -> None:
        """Answer one request: each fake routes by its own API."""

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean; every request is in the fake's calls()


class LoopbackFake(ABC):
    """Serves a fake's LoopbackServer on a thread; subclasses build the server in start()."""

    _server: LoopbackServer | None = None
    _thread: threading.Thread | None = None

    @abstractmethod
    def start(self) -> Self:
        """Build the fake's server and serve it (through `_serve`)."""

    def _serve(self, server: LoopbackServer, name: str) -> Self:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name=name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _root_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"
