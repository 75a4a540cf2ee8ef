"""Fetching a recording link without becoming a proxy into our network (SSRF).

The link comes from a push, so it is untrusted: only https, only the PBX tenant's domain (or an
allowlist), never a private, loopback or link-local address after DNS resolution (and the connection
goes to the address that was checked, so DNS cannot change its answer in between), no redirect to
another host, and caps on size and time. The body is streamed, never held whole.

The time cap is one deadline for the whole fetch (DNS aside): a watchdog shuts every socket of the
fetch down when it passes, so no wait (connect, TLS, status line, headers, body) can outlast it, however
slowly a server trickles bytes. A link that can never be fetched (malformed, another scheme, host or
port, an unsafe address, an answer that is not a recording) raises RecordingRejectedError at once;
only what may change with time (404, 5xx, timeouts, DNS) raises RecordingNotReadyError.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin, urlsplit

MAX_REDIRECTS = 2
# What http.client refuses in a request line: such a link can never be fetched.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Kept as written when a path is percent-encoded (reserved characters and existing escapes).
_PATH_SAFE = "/%:@!$&'()*+,;=-._~?"
# Answers that may change with time; any other non-200 answer never will.
_RETRY_STATUSES = frozenset({404, 408, 425, 429})


class RecordingRejectedError(Exception):
    """The link is unsafe or not a recording: recorded on the call with the reason, never retried."""


class RecordingNotReadyError(Exception):
    """404 or a temporary failure: the PBX often has not finished the file when `history` arrives."""


@dataclass(frozen=True)
class FetchPolicy:
    allowed_hosts: tuple[str, ...]  # a host, or ".example.ru" for it and its subdomains
    allowed_ports: tuple[int, ...] = (443,)
    max_bytes: int = 200 * 1024 * 1024
    max_seconds: float = 120.0
    # Only for the local stack and tests, where the simulator serves plain http on loopback.
    allow_local_http: bool = False
    resolve: Callable[[str, int], Sequence[str]] = field(default=lambda host, port: _resolve(host, port))

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for written in self.allowed_hosts:
            allowed = _idna(written)  # hosts listed in Unicode match the ASCII form links are compared in
            if host == allowed.lstrip(".") or (allowed.startswith(".") and host.endswith(allowed)):
                return True
        return False


def _resolve(host: str, port: int) -> list[str]:
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
    except socket.gaierror as exc:
        raise RecordingNotReadyError(f"cannot resolve {host}") from exc
    except UnicodeError:
        raise RecordingRejectedError("the link's host is not a valid name") from None


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    # Tunnelled IPv6 forms carry an IPv4 address inside; Python's tables for them differ by version.
    if isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped or ip.sixtofour or ip.teredo or ip.is_site_local):
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved)


@dataclass
class Target:
    scheme: str
    host: str
    port: int
    path: str
    address: str


def check_link(url: str, policy: FetchPolicy) -> Target:
    """The address to fetch `url` from, or RecordingRejectedError saying why not."""
    if _CONTROL.search(url.strip()):
        raise RecordingRejectedError("the link contains control characters")
    try:
        parts = urlsplit(url.strip())
        port_written = parts.port
    except ValueError as exc:  # "https://[::1", "https://host:99999", "https://host:abc"
        reason = "the link's port is not a port" if "port" in str(exc).lower() else "the link is malformed"
        raise RecordingRejectedError(reason) from None
    local = policy.allow_local_http and parts.hostname in ("127.0.0.1", "localhost")
    if parts.scheme != "https" and not (local and parts.scheme == "http"):
        raise RecordingRejectedError("only https links are fetched")
    if not parts.hostname or parts.username or parts.password:
        raise RecordingRejectedError("the link has no plain host")
    host = _ascii_host(parts.hostname)
    if not local and not policy.host_allowed(host):
        raise RecordingRejectedError(f"host {host} is not the PBX's")
    port = port_written or (443 if parts.scheme == "https" else 80)
    if not local and port not in policy.allowed_ports:
        raise RecordingRejectedError(f"port {port} is not the PBX's")
    addresses = policy.resolve(host, port)
    if not addresses:
        raise RecordingNotReadyError(f"{host} has no address")
    if not local and not all(_public(address) for address in addresses):
        raise RecordingRejectedError(f"host {host} resolves to a private or reserved address")
    # Spaces and non-ASCII letters are percent-encoded, as a browser would send them.
    path = quote(parts.path or "/", safe=_PATH_SAFE) + (
        f"?{quote(parts.query, safe=_PATH_SAFE)}" if parts.query else ""
    )
    return Target(parts.scheme, host, port, path, addresses[0])


def _ascii_host(host: str) -> str:
    """The host as DNS and the Host header take it (IDNA), or RecordingRejectedError."""
    try:
        return host.encode("idna").decode("ascii").lower().rstrip(".")
    except UnicodeError:
        raise RecordingRejectedError("the link's host is not a valid name") from None


def _idna(allowed: str) -> str:
    dot = "." if allowed.startswith(".") else ""
    try:
        return dot + allowed.lstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return allowed.lower()


class _Watchdog:
    """One deadline for a whole fetch: when it passes, every socket of the fetch is shut down, which
    ends any wait on it at once (a socket timeout only bounds each wait, and a server that sends a
    byte a second never trips it)."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(0.001, self.deadline - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def overdue(self) -> bool:
        return self.expired or time.monotonic() >= self.deadline

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._sockets.clear()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


def _connect(target: Target, watchdog: _Watchdog) -> socket.socket:
    sock = socket.create_connection((target.address, target.port), watchdog.remaining())
    watchdog.watch(sock)
    return sock


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the checked address, with the certificate verified for the host name."""

    def __init__(self, target: Target, watchdog: _Watchdog) -> None:
        super().__init__(target.host, target.port, timeout=watchdog.remaining(), context=ssl.create_default_context())
        self._target = target
        self._watchdog = watchdog

    def connect(self) -> None:
        sock = _connect(self._target, self._watchdog)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Plain http to the checked address: the local stack's simulator only (allow_local_http)."""

    def __init__(self, target: Target, watchdog: _Watchdog) -> None:
        super().__init__(target.address, target.port, timeout=watchdog.remaining())
        self._target = target
        self._watchdog = watchdog

    def connect(self) -> None:
        self.sock = _connect(self._target, self._watchdog)


class CappedBody:
    """The response body as a file for S3's upload: it stops at the size cap and the fetch's deadline."""

    def __init__(self, response: http.client.HTTPResponse, max_bytes: int, watchdog: _Watchdog) -> None:
        self._response = response
        self._max = max_bytes
        self._watchdog = watchdog
        self.size = 0

    def read(self, amount: int = 1024 * 1024) -> bytes:
        """Up to `amount` bytes, fewer only at the end. Read in short pieces (`read1` returns what
        has arrived), so a server that trickles a byte at a time still meets the deadline."""
        wanted = amount if amount and amount > 0 else 1024 * 1024
        pieces: list[bytes] = []
        got = 0
        while got < wanted:
            if self._watchdog.overdue():
                raise RecordingNotReadyError("the download took too long")
            try:
                piece = self._response.read1(min(wanted - got, 64 * 1024))
            except (OSError, http.client.HTTPException) as exc:
                raise self._broken(exc) from exc
            if not piece:
                # The watchdog ends a slow download by closing it: that is no end of the file.
                if self._watchdog.expired:
                    raise RecordingNotReadyError("the download took too long")
                if self._response.length:  # a declared length not reached: the file is cut short
                    raise RecordingNotReadyError("the connection closed before the end of the recording")
                break
            pieces.append(piece)
            got += len(piece)
            self.size += len(piece)
            if self.size > self._max:
                raise RecordingRejectedError(f"the recording is over {self._max} bytes")
        return b"".join(pieces)

    def _broken(self, exc: Exception) -> RecordingNotReadyError:
        if self._watchdog.overdue():
            return RecordingNotReadyError("the download took too long")
        return RecordingNotReadyError(f"the download broke off ({type(exc).__name__})")

    def chunks(self) -> Iterator[bytes]:
        while chunk := self.read():
            yield chunk


@dataclass
class Download:
    body: CappedBody
    content_type: str
    close: Callable[[], None]


def open_recording(url: str, policy: FetchPolicy) -> Download:
    """Open the link for streaming, following at most two redirects within the allowed hosts. The
    time cap runs from here to the Download's close: headers, redirects and body included."""
    watchdog = _Watchdog(policy.max_seconds)
    try:
        return _open(url, policy, watchdog)
    except BaseException:
        watchdog.stop()
        raise


def _open(url: str, policy: FetchPolicy, watchdog: _Watchdog) -> Download:
    for _ in range(MAX_REDIRECTS + 1):
        target = check_link(url, policy)
        connection: http.client.HTTPConnection
        if target.scheme == "https":
            connection = _PinnedHTTPSConnection(target, watchdog)
        else:
            connection = _PinnedHTTPConnection(target, watchdog)
        try:
            connection.request("GET", target.path, headers={"Host": target.host, "User-Agent": "pbxbridge-recorder"})
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            if watchdog.overdue():
                raise RecordingNotReadyError("the download took too long") from exc
            raise RecordingNotReadyError(f"cannot fetch the recording ({type(exc).__name__})") from exc
        if watchdog.expired:  # the headers were cut off by the deadline, whatever http.client made of them
            connection.close()
            raise RecordingNotReadyError("the download took too long")
        status = response.status
        if status in (301, 302, 303, 307, 308):
            location = response.getheader("Location") or ""
            connection.close()
            if not location.strip():
                raise RecordingRejectedError(f"the PBX answered {status} without a Location")
            url = urljoin(url, location)
            continue  # checked again at the top, like the first link
        if status in _RETRY_STATUSES or status >= 500:
            connection.close()
            raise RecordingNotReadyError(f"the PBX answered {status}")
        if status != 200:
            connection.close()
            raise RecordingRejectedError(f"the PBX answered {status}")
        length = response.getheader("Content-Length")
        if length and length.isdigit() and int(length) > policy.max_bytes:
            connection.close()
            raise RecordingRejectedError(f"the recording is over {policy.max_bytes} bytes")
        content_type = (response.getheader("Content-Type") or "application/octet-stream").split(";")[0].strip()
        if content_type.startswith(("text/html", "application/json")):
            connection.close()
            raise RecordingRejectedError(f"not a recording ({content_type})")

        def close(connection: http.client.HTTPConnection = connection) -> None:
            watchdog.stop()
            connection.close()

        return Download(CappedBody(response, policy.max_bytes, watchdog), content_type, close)
    raise RecordingRejectedError("too many redirects")
