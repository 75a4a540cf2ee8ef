"""Archiving a call's recording: fetch the link safely, stream it into the archive, note it on the call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol

from pbxbridge.recordings.fetch import FetchPolicy, RecordingRejectedError, open_recording

_EXTENSIONS = {
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/ogg": ".ogg",
}


class RecordingArchive(Protocol):
    def put(self, key: str, body: BinaryIO, content_type: str) -> None: ...
    def url_for(self, key: str, seconds: int) -> str: ...


class RecordingLedger(Protocol):
    def recording_archived(self, callid: str, key: str, size: int) -> None: ...
    def recording_rejected(self, callid: str, reason: str) -> None: ...


@dataclass(frozen=True)
class Archived:
    key: str
    size: int


def recording_key(callid: str, started: datetime | None, content_type: str) -> str:
    day = started.strftime("%Y/%m/%d") if started else "undated"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in callid)[:200]
    return f"recordings/{day}/{safe}{_EXTENSIONS.get(content_type, '')}"


def archive_recording(
    callid: str,
    link: str,
    started: datetime | None,
    policy: FetchPolicy,
    archive: RecordingArchive,
    ledger: RecordingLedger,
) -> Archived | None:
    """Archive one recording. A rejected link is noted on the call (None); RecordingNotReadyError
    (404, timeouts, 5xx) propagates so that the caller retries later."""
    try:
        download = open_recording(link, policy)
        key = recording_key(callid, started, download.content_type)
        try:
            archive.put(key, download.body, download.content_type)  # type: ignore[arg-type]
        finally:
            download.close()
    except RecordingRejectedError as exc:
        ledger.recording_rejected(callid, str(exc))
        return None
    ledger.recording_archived(callid, key, download.body.size)
    return Archived(key=key, size=download.body.size)
