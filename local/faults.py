"""Endpoints that fail the way real ones do, for tests and `make bench`: one that accepts connections
and never answers (a service that hangs), and an address nobody listens on (one that refuses)."""

from __future__ import annotations

import socket
import threading

from local.aws import LOOPBACK, free_port


class HangingServer:
    """Accepts connections and reads what comes, never answers; `close()` drops them all."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(128)
        self.url = f"http://{LOOPBACK}:{self.sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


def refusing_url() -> str:
    """An address on loopback where nothing listens: connections are refused at once."""
    return f"http://{LOOPBACK}:{free_port()}"
