"""A TCP relay on loopback that the test controls, to give a real server real network faults:
refuse connections (``cut``/``restore``), reset the next few (``drop``), answer the next few
itself (``answer``, e.g. an S3 503 SlowDown), take the next few and never answer (``stall``: a
hung server), or start listening only after a delay."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time


def _reset(conn: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0): the peer sees 'connection reset', not a clean EOF."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()


_SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>1</RequestId></Error>"
)
SLOW_DOWN = (  # what S3 answers a client that must slow down
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    + f"Content-Length: {len(_SLOW_DOWN_BODY)}\r\n\r\n".encode()
    + _SLOW_DOWN_BODY
)


class Proxy:
    def __init__(self, target: tuple[str, int], *, listen_after: float = 0.0) -> None:
        self.target = target
        self.accepted = 0  # connections accepted (the faulted ones included)
        self._lock = threading.Lock()
        self._drop = 0
        self._stall = 0
        self._answers: list[bytes] = []
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        with socket.socket() as probe:  # a free port, kept for this proxy's whole life
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        if listen_after:
            threading.Timer(listen_after, self.restore).start()
        else:
            self.restore()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def drop(self, n: int) -> None:
        """Reset the next ``n`` connections as soon as they are accepted."""
        with self._lock:
            self._drop += n

    def stall(self, n: int) -> None:
        """Accept the next ``n`` connections, read what they send and never answer."""
        with self._lock:
            self._stall += n

    def answer(self, n: int, response: bytes) -> None:
        """Answer the next ``n`` connections with ``response`` (after reading the request)."""
        with self._lock:
            self._answers += [response] * n

    def heal(self) -> None:
        """Forget the faults still planned by ``drop`` and ``answer``."""
        with self._lock:
            self._drop = 0
            self._stall = 0
            self._answers.clear()

    def cut(self) -> None:
        """Stop listening (new connections are refused) and reset every open connection."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:  # shutdown wakes the thread blocked in accept(); close alone
            with contextlib.suppress(OSError):  # would leave the socket listening under it
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in conns:
            _reset(conn)

    def restore(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR on POSIX
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                dropping = self._drop > 0
                self._drop -= dropping
                stalling = self._stall > 0 and not dropping
                self._stall -= stalling
                answer = self._answers.pop(0) if self._answers and not dropping else None
                if stalling:
                    self._conns.append(client)  # held open until cut() or close()
            if dropping:
                _reset(client)
            elif stalling:
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
            elif answer is not None:
                threading.Thread(target=self._answer, args=(client, answer), daemon=True).start()
            else:
                self._relay(client)

    @staticmethod
    def _answer(client: socket.socket, response: bytes) -> None:
        with contextlib.suppress(OSError):
            client.settimeout(2)
            seen = b""
            while b"\r\n\r\n" not in seen:
                chunk = client.recv(65536)
                if not chunk:
                    break
                seen += chunk
            time.sleep(0.05)  # let a small body arrive too, then answer and close
            client.sendall(response)
        _reset(client)

    @staticmethod
    def _swallow(client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while client.recv(65536):
                pass

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            _reset(client)
            return
        with self._lock:
            self._conns += [client, upstream]
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
                s.close()
