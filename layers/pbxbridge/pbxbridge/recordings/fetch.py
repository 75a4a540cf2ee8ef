"""Fetching a recording link without becoming a proxy into our network (SSRF).

The link comes from a push, so it is untrusted: only https, only the PBX tenant's domain (or an
allowlist), never a private, loopback or link-local address after DNS resolution (and the connection
goes to the address that was checked, so DNS cannot change its answer in between), no redirect to
another host, and caps on size and time. The body is streamed, never held whole.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

MAX_REDIRECTS = 2


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
        for allowed in self.allowed_hosts:
            allowed = allowed.lower()
            if host == allowed.lstrip(".") or (allowed.startswith(".") and host.endswith(allowed)):
                return True
        return False


def _resolve(host: str, port: int) -> list[str]:
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
    except socket.gaierror as exc:
        raise RecordingNotReadyError(f"cannot resolve {host}") from exc


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
    parts = urlsplit(url.strip())
    local = policy.allow_local_http and parts.hostname in ("127.0.0.1", "localhost")
    if parts.scheme != "https" and not (local and parts.scheme == "http"):
        raise RecordingRejectedError("only https links are fetched")
    host = parts.hostname or ""
    if not host or parts.username or parts.password:
        raise RecordingRejectedError("the link has no plain host")
    if not local and not policy.host_allowed(host):
        raise RecordingRejectedError(f"host {host} is not the PBX's")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise RecordingRejectedError("the link's port is not a port") from None
    if not local and port not in policy.allowed_ports:
        raise RecordingRejectedError(f"port {port} is not the PBX's")
    addresses = policy.resolve(host, port)
    if not addresses:
        raise RecordingNotReadyError(f"{host} has no address")
    if not local and not all(_public(address) for address in addresses):
        raise RecordingRejectedError(f"host {host} resolves to a private or reserved address")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, path, addresses[0])


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the checked address, with the certificate verified for the host name."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self._address = target.address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class CappedBody:
    """The response body as a file for S3's upload: it stops at the size and time caps."""

    def __init__(self, response: http.client.HTTPResponse, max_bytes: int, deadline: float) -> None:
        self._response = response
        self._max = max_bytes
        self._deadline = deadline
        self.size = 0

    def read(self, amount: int = 1024 * 1024) -> bytes:
        """Up to `amount` bytes, fewer only at the end. Read in short pieces (`read1` returns what
        has arrived), so a server that trickles a byte at a time still meets the deadline."""
        wanted = amount if amount and amount > 0 else 1024 * 1024
        pieces: list[bytes] = []
        got = 0
        while got < wanted:
            if time.monotonic() > self._deadline:
                raise RecordingNotReadyError("the download took too long")
            piece = self._response.read1(min(wanted - got, 64 * 1024))
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
            self.size += len(piece)
            if self.size > self._max:
                raise RecordingRejectedError(f"the recording is over {self._max} bytes")
        return b"".join(pieces)

    def chunks(self) -> Iterator[bytes]:
        while chunk := self.read():
            yield chunk


@dataclass
class Download:
    body: CappedBody
    content_type: str
    close: Callable[[], None]


def open_recording(url: str, policy: FetchPolicy) -> Download:
    """Open the link for streaming, following at most two redirects within the allowed hosts."""
    deadline = time.monotonic() + policy.max_seconds
    for _ in range(MAX_REDIRECTS + 1):
        target = check_link(url, policy)
        # Each wait on the socket ends by the deadline (and in 10 s at most): no single recv can stall.
        timeout = min(10.0, max(0.5, deadline - time.monotonic()))
        connection: http.client.HTTPConnection
        if target.scheme == "https":
            connection = _PinnedHTTPSConnection(target, timeout)
        else:
            connection = http.client.HTTPConnection(target.address, target.port, timeout=timeout)
        try:
            connection.request("GET", target.path, headers={"Host": target.host, "User-Agent": "pbxbridge-recorder"})
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise RecordingNotReadyError(f"cannot fetch the recording ({type(exc).__name__})") from exc
        status = response.status
        if status in (301, 302, 303, 307, 308):
            location = response.getheader("Location") or ""
            connection.close()
            url = urljoin(url, location)
            continue  # checked again at the top, like the first link
        if status == 404 or status >= 500 or status == 429:
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
        return Download(CappedBody(response, policy.max_bytes, deadline), content_type, connection.close)
    raise RecordingRejectedError("too many redirects")


def copy_to(download: Download, sink: BinaryIO) -> int:
    try:
        for chunk in download.body.chunks():
            sink.write(chunk)
    finally:
        download.close()
    return download.body.size
