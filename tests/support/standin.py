"""What every stand-in server of the tests shares: an HTTP (or, given a TLS context, HTTPS) server on 127.0.0.1
and a free port, serving from a thread. It stops at the end of the `with` block, or by itself after `lifetime`
seconds if that never comes (a test that hangs or dies leaves no server behind).

A stand-in subclasses HttpStandIn, says how it answers (`handler`, a BaseHTTPRequestHandler subclass) and, for
https, its TLS context (`tls`), and calls `serve()` from its `__enter__`.
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme


def local_tls(directory: Path, name: str) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 and localhost from a certificate authority made for the test with
    trustme, and that authority's certificate written to `directory/<name>-ca.pem` for the client to trust."""
    authority = trustme.CA()
    ca_bundle = directory / f"{name}-ca.pem"
    authority.cert_pem.write_to_path(str(ca_bundle))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context, ca_bundle


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and answers with one call."""

    def log_message(self, *args):
        pass

    def answer(self, status: int, kind: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class HttpStandIn:
    lifetime: float = 120.0

    def handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def tls(self) -> ssl.SSLContext | None:
        """The server's TLS context: None serves plain http."""
        return None

    def serve(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self._server.daemon_threads = True
        context = self.tls()
        self._scheme = "http"
        if context is not None:
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime, self._server.shutdown)
        self._timer.daemon = True
        self._timer.start()

    def __enter__(self):
        self.serve()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    @property
    def port(self) -> int:
        return self._server.server_port

    @property
    def base_url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self.port}"
