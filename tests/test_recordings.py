"""Recordings: the SSRF rules, the retry and dead-letter paths, and the archive in (embedded) S3."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from local.aws import LOOPBACK, client
from pbxbridge.recordings.archive import archive_recording
from pbxbridge.recordings.fetch import (
    FetchPolicy,
    RecordingNotReadyError,
    RecordingRejectedError,
    check_link,
    open_recording,
)

AUDIO = b"ID3" + bytes(range(256)) * 64


def policy(addresses: dict[str, list[str]] | None = None, **overrides: Any) -> FetchPolicy:
    table = {"tenant.example.ru": ["93.184.216.34"], "cdn.example.ru": ["93.184.216.35"], **(addresses or {})}
    return FetchPolicy(
        allowed_hosts=("tenant.example.ru", ".cdn.example.ru"),
        resolve=lambda host, port: table.get(host, []),
        **overrides,
    )


class TestLinkRules:
    def test_the_tenants_https_link_is_fetched_from_the_checked_address(self) -> None:
        target = check_link("https://tenant.example.ru/records/1.mp3?x=1", policy())
        assert (target.host, target.address, target.port, target.path) == (
            "tenant.example.ru",
            "93.184.216.34",
            443,
            "/records/1.mp3?x=1",
        )
        assert check_link("https://cdn.example.ru/a.mp3", policy()).address == "93.184.216.35"

    @pytest.mark.parametrize(
        ("link", "reason"),
        [
            ("http://tenant.example.ru/r.mp3", "only https"),
            ("ftp://tenant.example.ru/r.mp3", "only https"),
            ("https://evil.example.com/r.mp3", "not the PBX's"),
            ("https://tenant.example.ru.evil.com/r.mp3", "not the PBX's"),
            ("https://user:pass@tenant.example.ru/r.mp3", "no plain host"),
            ("https:///r.mp3", "no plain host"),
            ("https://tenant.example.ru:22/r.mp3", "port 22"),
            ("https://tenant.example.ru:abc/r.mp3", "not a port"),
            ("https://tenant.example.ru:99999/r.mp3", "not a port"),
            ("http://127.0.0.1/r.mp3", "only https"),  # loopback over http is for the local stack only
            # Malformed: no retry can ever fetch these, so they are rejected at once, not retried for hours.
            ("", "only https"),
            ("not a link", "only https"),
            ("https://[::1/r.mp3", "malformed"),
            ("https://tenant.example.ru/r\n.mp3", "control characters"),
            ("https://tenant.example.ru/r.mp3\x00", "control characters"),
            ("https://" + "a" * 64 + ".cdn.example.ru/r.mp3", "not a valid name"),  # a DNS label is 63 at most
            ("https://a..cdn.example.ru/r.mp3", "not a valid name"),
        ],
    )
    def test_links_outside_the_rules_are_rejected(self, link: str, reason: str) -> None:
        with pytest.raises(RecordingRejectedError, match=reason):
            check_link(link, policy())

    @pytest.mark.parametrize(
        "address",
        [
            "10.0.0.7",
            "192.168.1.1",
            "172.16.5.4",
            "127.0.0.1",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "2002:a00:1::1",  # 6to4 of 10.0.0.1
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo
            "fec0::1",  # site-local
            "0.0.0.0",  # noqa: S104 - an address under test, nothing binds to it
            "100.64.0.1",
            "224.0.0.1",
        ],
    )
    def test_an_allowed_name_that_resolves_inside_is_rejected(self, address: str) -> None:
        rules = policy({"tenant.example.ru": ["93.184.216.34", address]})  # one bad address is enough
        with pytest.raises(RecordingRejectedError, match="private or reserved"):
            check_link("https://tenant.example.ru/r.mp3", rules)

    def test_spaces_and_letters_are_percent_encoded_as_a_browser_sends_them(self) -> None:
        target = check_link("https://tenant.example.ru/записи/a b.mp3?day=1 2&x=%2F", policy())
        assert target.path == "/%D0%B7%D0%B0%D0%BF%D0%B8%D1%81%D0%B8/a%20b.mp3?day=1%202&x=%2F"

    def test_an_international_host_is_compared_and_sent_in_its_ascii_form(self) -> None:
        rules = FetchPolicy(allowed_hosts=(".тенант.рф",), resolve=lambda host, port: ["93.184.216.34"])
        assert check_link("https://Записи.Тенант.рф/r.mp3", rules).host == "записи.тенант.рф".encode("idna").decode()

    def test_a_name_that_does_not_resolve_is_retried_later(self) -> None:
        with pytest.raises(RecordingNotReadyError):
            check_link("https://tenant.example.ru/r.mp3", policy({"tenant.example.ru": []}))


class _Files(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path
        if path == "/rec/ok.mp3":
            self._send(200, AUDIO, "audio/mpeg")
        elif path == "/rec/missing.mp3":
            self._send(404, b"not yet", "text/plain")
        elif path == "/rec/html":
            self._send(200, b"<html>login</html>", "text/html")
        elif path == "/rec/huge-declared":
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
        elif path == "/rec/huge-undeclared":
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            self.end_headers()
            self.close_connection = True
            try:
                for _ in range(64):
                    self.wfile.write(b"\0" * 65536)
            except OSError:
                pass
        elif path == "/rec/trickle":
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            self.end_headers()
            self.close_connection = True
            try:
                for _ in range(40):  # a byte every 0.1 s: each recv succeeds, the whole never ends in time
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
        elif path == "/rec/slow-headers":
            # The status line at once, then a header byte every 0.1 s: each recv succeeds quickly, so
            # only a deadline for the whole fetch (not a socket timeout) can end it.
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            self.close_connection = True
            try:
                for _ in range(60):
                    self.wfile.write(b"X")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
        elif path == "/rec/cut-short":
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            self.send_header("Content-Length", str(len(AUDIO)))
            self.end_headers()
            self.wfile.write(AUDIO[:100])
            self.close_connection = True
        elif path == "/rec/a%20b.mp3":
            self._send(200, AUDIO, "audio/mpeg")
        elif path.startswith("/rec/status-"):
            self._send(int(path.rsplit("-", 1)[1]), b"", "text/plain")
        elif path == "/rec/away":
            self._send(302, b"", "text/plain", {"Location": "https://evil.example.com/steal"})
        elif path == "/rec/metadata":
            self._send(302, b"", "text/plain", {"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path == "/rec/hop":
            self._send(302, b"", "text/plain", {"Location": "/rec/ok.mp3"})
        else:
            self._send(500, b"", "text/plain")

    def _send(self, status: int, body: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def files() -> Iterator[str]:
    server = ThreadingHTTPServer((LOOPBACK, 0), _Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{LOOPBACK}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


LOCAL = FetchPolicy(allowed_hosts=(), allow_local_http=True, max_bytes=1024 * 1024, max_seconds=10)


class TestFetching:
    def test_a_recording_streams(self, files: str) -> None:
        download = open_recording(f"{files}/rec/ok.mp3", LOCAL)
        body = b"".join(download.body.chunks())
        download.close()
        assert (body, download.content_type) == (AUDIO, "audio/mpeg")

    def test_a_relative_redirect_on_the_same_host_is_followed(self, files: str) -> None:
        download = open_recording(f"{files}/rec/hop", LOCAL)
        assert b"".join(download.body.chunks()) == AUDIO
        download.close()

    @pytest.mark.parametrize(
        ("path", "reason"),
        [
            ("/rec/away", "not the PBX's"),
            ("/rec/metadata", "only https"),
            ("/rec/html", "not a recording"),
            ("/rec/huge-declared", "over"),
        ],
    )
    def test_unsafe_answers_are_rejected(self, files: str, path: str, reason: str) -> None:
        with pytest.raises(RecordingRejectedError, match=reason):
            open_recording(f"{files}{path}", LOCAL)

    def test_a_body_over_the_cap_is_cut_off_while_streaming(self, files: str) -> None:
        download = open_recording(f"{files}/rec/huge-undeclared", LOCAL)
        with pytest.raises(RecordingRejectedError, match="over"):
            b"".join(download.body.chunks())
        download.close()

    def test_a_server_that_trickles_meets_the_time_cap(self, files: str) -> None:
        rules = FetchPolicy(allowed_hosts=(), allow_local_http=True, max_seconds=1)
        download = open_recording(f"{files}/rec/trickle", rules)
        started = time.monotonic()
        with pytest.raises(RecordingNotReadyError, match="too long"):
            download.body.read(8 * 1024 * 1024)  # what S3's managed upload asks for at a time
        download.close()
        assert time.monotonic() - started < 2.5

    def test_a_server_that_trickles_its_headers_meets_the_time_cap(self, files: str) -> None:
        rules = FetchPolicy(allowed_hosts=(), allow_local_http=True, max_seconds=1)
        started = time.monotonic()
        with pytest.raises(RecordingNotReadyError, match="too long"):
            open_recording(f"{files}/rec/slow-headers", rules)
        assert time.monotonic() - started < 1.8  # the server would go on for 6 s

    def test_the_time_cap_covers_the_whole_fetch_not_each_part(self, files: str) -> None:
        """Headers and body share one deadline: time spent before the body is not granted again."""
        rules = FetchPolicy(allowed_hosts=(), allow_local_http=True, max_seconds=1.5)
        started = time.monotonic()
        download = open_recording(f"{files}/rec/trickle", rules)
        time.sleep(1.0)  # the upload starting late (S3 slow, say) spends the same budget
        with pytest.raises(RecordingNotReadyError, match="too long"):
            b"".join(download.body.chunks())
        download.close()
        assert time.monotonic() - started < 2.3

    def test_a_body_cut_short_is_retried_not_archived(self, files: str) -> None:
        download = open_recording(f"{files}/rec/cut-short", LOCAL)
        with pytest.raises(RecordingNotReadyError, match="before the end"):
            b"".join(download.body.chunks())
        download.close()

    def test_a_link_with_a_space_is_fetched(self, files: str) -> None:
        download = open_recording(f"{files}/rec/a b.mp3", LOCAL)
        assert b"".join(download.body.chunks()) == AUDIO
        download.close()

    @pytest.mark.parametrize("path", ["/rec/missing.mp3", "/rec/broken", "/rec/status-429", "/rec/status-408"])
    def test_404_and_5xx_are_retried_later(self, files: str, path: str) -> None:
        with pytest.raises(RecordingNotReadyError):
            open_recording(f"{files}{path}", LOCAL)

    @pytest.mark.parametrize("status", [400, 401, 403, 410, 204])
    def test_answers_no_retry_changes_are_rejected_at_once(self, files: str, status: int) -> None:
        with pytest.raises(RecordingRejectedError, match=f"answered {status}"):
            open_recording(f"{files}/rec/status-{status}", LOCAL)


@pytest.fixture
def bucket(aws: dict[str, str], moto_url: str) -> str:
    client("s3", moto_url).create_bucket(
        Bucket="recordings", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    return "recordings"


def test_archive_into_s3_and_note_on_the_call(
    files: str, bucket: str, call_store: Any, moto_url: str, webhook: Any
) -> None:
    from pbxbridge.storage.s3 import S3RecordingArchive

    webhook.push(
        cmd="history",
        type="in",
        status="Success",
        phone="79101234567",
        user="andy",
        start="20261127T100000Z",
        duration="9",
        callid="rec-1",
        link=f"{files}/rec/ok.mp3",
    )
    s3 = client("s3", moto_url)
    archive = S3RecordingArchive(s3, bucket)
    archived = archive_recording("rec-1", f"{files}/rec/ok.mp3", None, LOCAL, archive, call_store)
    assert archived is not None
    assert s3.get_object(Bucket=bucket, Key=archived.key)["Body"].read() == AUDIO
    call = call_store.get_call("rec-1")
    assert (call["recording_key"], call["recording_size"]) == (archived.key, len(AUDIO))
    assert archived.key == "recordings/undated/rec-1.mp3"
    assert archive.url_for(archived.key, 60).startswith(moto_url)
    rejected = archive_recording("rec-1", f"{files}/rec/away", None, LOCAL, archive, call_store)
    assert rejected is None
    assert "not the PBX's" in call_store.get_call("rec-1")["recording_rejected"]


def sqs_event(*bodies: dict[str, Any]) -> dict[str, Any]:
    from local.sources import sqs_record

    arn = "arn:aws:sqs:eu-central-1:123456789012:RecordingsQueue"
    return {"Records": [sqs_record(f"m{i}", f"r{i}", json.dumps(body), arn) for i, body in enumerate(bodies)]}


def test_the_recorder_reports_only_what_to_retry(files: str, bucket: str, call_store: Any, moto_url: str) -> None:
    from pbxbridge.recorder import RecorderDependencies, handle_batch
    from pbxbridge.storage.s3 import S3RecordingArchive

    deps = RecorderDependencies(
        policy=LOCAL, archive=S3RecordingArchive(client("s3", moto_url), bucket), ledger=call_store
    )
    event = sqs_event(
        {"callid": "ok", "link": f"{files}/rec/ok.mp3"},
        {"callid": "later", "link": f"{files}/rec/missing.mp3"},
        {"callid": "unsafe", "link": f"{files}/rec/away"},
    )
    answer = handle_batch(event, None, deps)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert call_store.get_call("ok")["recording_key"].endswith("ok.mp3")
    assert "recording_rejected" in call_store.get_call("unsafe")


def test_what_no_retry_can_fetch_is_rejected_at_once(files: str, bucket: str, call_store: Any, moto_url: str) -> None:
    """Malformed links and messages that are not jobs never come back: only "not there yet" does."""
    from local.sources import sqs_record
    from pbxbridge.recorder import RecorderDependencies, handle_batch
    from pbxbridge.storage.s3 import S3RecordingArchive

    deps = RecorderDependencies(
        policy=LOCAL, archive=S3RecordingArchive(client("s3", moto_url), bucket), ledger=call_store
    )
    event = sqs_event(
        {"callid": "bracket", "link": "https://[::1/r.mp3"},
        {"callid": "newline", "link": f"{files}/rec/ok\n.mp3"},
        {"callid": "gone", "link": f"{files}/rec/status-410"},
        {"callid": "nolink"},
        {"callid": "later", "link": f"{files}/rec/missing.mp3"},
    )
    arn = event["Records"][0]["eventSourceARN"]
    event["Records"] += [sqs_record("junk", "r-junk", "not json", arn), sqs_record("list", "r-list", "[1]", arn)]
    answer = handle_batch(event, None, deps)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m4"}]}
    reasons = {callid: call_store.get_call(callid)["recording_rejected"] for callid in ("bracket", "newline", "gone")}
    assert reasons == {
        "bracket": "the link is malformed",
        "newline": "the link contains control characters",
        "gone": "the PBX answered 410",
    }
    assert call_store.get_call("nolink")["recording_rejected"] == "not a recording job (link: Field required)"


def test_a_recording_that_never_appears_ends_in_the_dead_letter_queue(moto_url: str, aws: dict[str, str]) -> None:
    """The template's redrive: after maxReceiveCount failed tries the message moves to the DLQ."""
    from local.template import Template

    resources = Template().body["Resources"]
    max_receives = resources["RecordingsQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"]
    sqs = client("sqs", moto_url)
    dlq = sqs.create_queue(QueueName="RecordingsDeadLetterQueue")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName="RecordingsQueue",
        Attributes={
            "VisibilityTimeout": "0",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}),
        },
    )["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"callid": "c", "link": "https://t/404"}))
    tries = 0
    for _ in range(max_receives + 2):
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1).get("Messages", [])
        tries += len(messages)  # each one fails (404) and is left for SQS to hand back
    assert tries == max_receives
    assert len(sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])) == 1


def test_the_sample_recorder_event_is_a_recording_job() -> None:
    from pathlib import Path

    from pbxbridge.recorder import RecordingJob

    sample = json.loads((Path(__file__).resolve().parent.parent / "events" / "recorder-sqs.json").read_text())
    job = RecordingJob.model_validate(json.loads(sample["Records"][0]["body"]))
    assert job.link.startswith("https://tenant.example.ru/")
