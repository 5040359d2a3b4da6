"""`mtx serve`'s connections: the listening socket, the uvicorn server that stops gracefully, a protocol that
gives every request `REQUEST_TIMEOUT` seconds to arrive whole (408 after). Proxy headers (X-Forwarded-For) are
believed only from the addresses given (none by default)."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading

REQUEST_TIMEOUT = 5.0  # seconds for a request's headers and body to arrive
LINGER = 1.0  # seconds a refused body's rest is read away before its connection closes
MAX_CONNECTIONS = 1024  # open connections (and requests in flight); more are answered 503
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: one the system picks)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def server(app, grace_s: float = 30.0, forwarded_allow_ips: list[str] | None = None):
    """A uvicorn server for `app` (without access log); `server.run(sockets=[sock])` serves until SIGTERM/SIGINT
    (or `server.should_exit = True`), answering the requests in flight for up to `grace_s` seconds; a client's
    address is the connection's unless it comes from `forwarded_allow_ips` (a proxy)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            """As uvicorn's, but a signal that stopped the server gracefully is not raised again afterwards (which
            would kill the process): `mtx serve` returns, says so and exits 0."""
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            old = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in old.items():
                    signal.signal(sig, handler)

    config = uvicorn.Config(
        app,
        http=_deadline_protocol(),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=grace_s,
        limit_concurrency=MAX_CONNECTIONS,
        proxy_headers=bool(forwarded_allow_ips),
        forwarded_allow_ips=list(forwarded_allow_ips or []) or None,
    )
    return Server(config)


def _deadline_protocol():
    """uvicorn's HTTP protocol (httptools), with a deadline for each request to arrive whole: from the connection
    (for its first request) or from a request's first byte to its body's last; past it, 408 and the connection
    is closed. (uvicorn's own keep-alive timer starts only after a response.)"""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Protocol(HttpToolsProtocol):
        deadline, discarding = None, False

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self.deadline is None:
                self._arm()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.deadline is not None and not self.transport.is_closing():  # answered before its body came:
                self._disarm()  # what is still coming is read and dropped for a moment, then the connection
                self.discarding = True  # closes (closing with bytes unread would reset it, answer and all)
                self.flow.resume_reading()
                self.loop.call_later(LINGER, self.transport.close)

        def data_received(self, data: bytes) -> None:
            if not self.discarding:
                super().data_received(data)

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self.deadline = self.loop.call_later(REQUEST_TIMEOUT, self._expired)

        def _disarm(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def _expired(self) -> None:
            self.deadline = None
            if not self.transport.is_closing():
                body = b'{"error": "the request did not arrive in time"}'
                head = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                self.transport.write(head + b"content-length: %d\r\n\r\n" % len(body) + body)
                self.transport.close()

    return Protocol
