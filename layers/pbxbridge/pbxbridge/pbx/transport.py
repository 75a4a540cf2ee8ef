"""HTTP to one PBX, whichever API it speaks: pooled sessions, retries, timeouts and error mapping.

Requests that are safe to repeat are retried with backoff (connect, read and 5xx). A dial is retried
only when the connection failed before the request was sent: a click-to-call must never ring the
client twice. Redirects are not followed: live PBXs answer 301 for a wrong tenant. Each attempt waits
at most `read_timeout` (`slow_read_timeout` for the history), and no error message ever shows the key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Container, Iterable, Iterator, Mapping
from typing import Any, Self
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from pbxbridge.pbx.errors import (
    PbxError,
    PbxIntegrationDisabledError,
    PbxInvalidParametersError,
    PbxInvalidTokenError,
    PbxUnavailableError,
    PbxWrongTenantError,
)
from pbxbridge.pbx.models import MakeCallResult

_RETRY_STATUSES = (500, 502, 503, 504)
# What a tenant whose CRM integration is switched off in the cabinet answers, with a 401.
_DOMAIN_DISABLED = re.compile(r"domain\s+disabled", re.IGNORECASE)


def public_address(url: str) -> str:
    """The URL as error messages name it: without any user:password part or query."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def _session(retry: Retry, headers: Mapping[str, str]) -> requests.Session:
    session = requests.Session()
    session.headers.update(headers)
    adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=4)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _never_connected(exc: requests.ConnectionError) -> bool:
    text = repr(exc)
    return "NewConnectionError" in text or "Failed to establish a new connection" in text or "ConnectTimeout" in text


class PbxHttp:
    """Two sessions to one PBX: `safe` (retried) and `dial` (only a connection that never opened is
    tried again), the timeouts, and the PBX's answers read into our errors."""

    def __init__(
        self,
        where: str,
        secret: str,
        *,
        safe_methods: Iterable[str],
        dial_methods: Iterable[str] = ("POST",),
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        slow_read_timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.3,
    ) -> None:
        self.where = where
        self._secret = secret
        self._timeout = (connect_timeout, read_timeout)
        self._slow_timeout = (connect_timeout, slow_read_timeout)
        self._safe = _session(
            Retry(
                total=retries,
                connect=retries,
                read=retries,
                status=retries,
                other=0,
                backoff_factor=backoff,
                status_forcelist=_RETRY_STATUSES,
                allowed_methods=frozenset(safe_methods),
                raise_on_status=False,
                redirect=0,
            ),
            headers or {},
        )
        self._dial = _session(
            Retry(
                total=retries,
                connect=retries,
                read=0,
                status=0,
                other=0,
                backoff_factor=backoff,
                allowed_methods=frozenset(dial_methods),
                raise_on_status=False,
                redirect=0,
            ),
            headers or {},
        )

    def close(self) -> None:
        self._safe.close()
        self._dial.close()

    def send(
        self,
        method: str,
        url: str,
        *,
        dial: bool = False,
        slow: bool = False,
        stream: bool = False,
        ok: Container[int] = (),
        **kwargs: Any,
    ) -> requests.Response:
        """One request; an answer of 300 or more raises the matching PbxError unless it is in `ok`."""
        session = self._dial if dial else self._safe
        try:
            response = session.request(
                method,
                url,
                timeout=self._slow_timeout if slow else self._timeout,
                allow_redirects=False,
                stream=stream,
                **kwargs,
            )
        except requests.ConnectTimeout as exc:
            raise self.unavailable("the PBX did not accept a connection in time", request_sent=False) from exc
        except requests.ConnectionError as exc:
            # After retries, requests reports a read timeout as a ConnectionError too.
            what = "did not answer in time" if "ReadTimeout" in repr(exc) else "connection failed"
            raise self.unavailable(f"the PBX {what}", request_sent=not _never_connected(exc)) from exc
        except requests.Timeout as exc:
            raise self.unavailable("the PBX did not answer in time") from exc
        except requests.RequestException as exc:
            raise self.unavailable(f"the request to the PBX failed ({type(exc).__name__})") from exc
        if response.status_code >= 300 and response.status_code not in ok:
            try:
                self.raise_for(response)
            finally:
                response.close()
        return response

    def unavailable(self, message: str, *, status: int | None = None, request_sent: bool = True) -> PbxUnavailableError:
        """The error, naming the PBX it is about: a wrong PBX_URL is the first thing to rule out."""
        return PbxUnavailableError(f"{message} ({self.where})", status=status, request_sent=request_sent)

    def raise_for(self, response: requests.Response) -> None:
        status = response.status_code
        message = self.message(response)
        if 300 <= status < 400:
            where = response.headers.get("Location", "")
            raise PbxWrongTenantError(f"the PBX redirects ({status} {where}): wrong tenant domain?", status=status)
        if status == 401:
            if _DOMAIN_DISABLED.search(message):
                raise PbxIntegrationDisabledError(
                    "the PBX answered 'Domain disabled': the CRM integration is switched off in the PBX "
                    f"cabinet; switch it on there ({self.where})",
                    status=status,
                )
            raise PbxInvalidTokenError(message or "Invalid token", status=status)
        if status == 400:
            raise PbxInvalidParametersError(message or "Invalid parameters", status=status)
        if status >= 500:
            raise self.unavailable(message or f"the PBX answered {status}", status=status)
        raise PbxError(message or f"the PBX answered {status}", status=status)

    def message(self, response: requests.Response) -> str:
        """The PBX's own error message (its JSON `error`, or a short text), with our key masked."""
        text = response.text[:500]
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        message = str(data.get("error", "")) if isinstance(data, dict) else ""
        if not message and "<html" not in text.lower():
            message = text.strip()
        return self.mask(message)

    def mask(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def json(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self.unavailable("the PBX answered something that is not JSON", status=response.status_code) from None


def is_html(response: requests.Response, *, body: bool = True) -> bool:
    """A gateway's or a web server's page, not an API's answer (by its type, and unless `body` is
    False, which leaves a stream unread, by how its body starts)."""
    if "html" in response.headers.get("Content-Type", "").lower():
        return True
    return body and response.content[:200].lstrip().lower().startswith((b"<!doctype html", b"<html"))


# Reading answers both APIs give


def byte_lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Lines of a byte stream ending in LF or CRLF. Not requests' iter_lines: it splits a CRLF that
    straddles two chunks into two line ends, which shifts every later line number by one."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.removesuffix(b"\r").decode("utf-8", "replace")
    if pending:
        yield pending.removesuffix(b"\r").decode("utf-8", "replace")


def maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def read_switch(data: Any, key: str) -> bool:
    value = data.get(key) if isinstance(data, dict) else None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("on", "true", "off", "false"):
        return value.lower() in ("on", "true")
    raise PbxUnavailableError(f"the PBX's answer has no {key!r}")


def make_call_result(text: str) -> MakeCallResult:
    """`makeCall` answers plain text, `{"uuid": ...}`, `{"CallID": ...}` or an object with neither."""
    body = text.strip()
    data = maybe_json(body)
    if isinstance(data, dict):
        for key in ("uuid", "CallID", "callid", "call_id", "id"):
            if data.get(key):
                return MakeCallResult(call_id=str(data[key]), id_known=True, raw=data)
        return MakeCallResult(call_id=None, id_known=False, raw=data)
    if isinstance(data, str | int) and str(data):
        return MakeCallResult(call_id=str(data), id_known=True, raw=data)
    if body and data is None and len(body) <= 200 and "<" not in body:
        return MakeCallResult(call_id=body, id_known=True, raw=body)
    return MakeCallResult(call_id=None, id_known=False, raw=body or None)


class PbxClientBase:
    """What both PBX clients are around their transport: a pool to close, usable in a `with`."""

    _http: PbxHttp

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
