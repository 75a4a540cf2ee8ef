"""The embedded AWS: moto's server on loopback, provisioned from the template."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

import boto3
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from local import moto_bounds
from local.template import LOCAL_REGION, Template

LOOPBACK = "127.0.0.1"


def local_aws_environment(endpoint: str) -> dict[str, str]:
    """Variables that point boto3 (and the AWS CLI) at the embedded AWS, with throwaway credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_REGION": LOCAL_REGION,
    }


def use_local_aws(endpoint: str) -> None:
    """Point this process at the embedded AWS, and never at a real account by accident."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_DYNAMODB"):
        os.environ.pop(name, None)
    os.environ.update(local_aws_environment(endpoint))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class EmbeddedAws:
    """moto's server on a thread, applying one DynamoDB request at a time, its costs kept bounded.

    DynamoDB applies the writes to one item one after another, which is what makes conditional and
    ADD updates atomic; moto's threaded server does not, so concurrent pushes could interleave inside
    moto as they never would in DynamoDB. Requests still arrive concurrently; DynamoDB's (and its
    streams', whose records the stream pollers trim) are applied in turn, other services' as they
    come. local.moto_bounds says what else is changed in moto, and why.
    """

    def __init__(self, port: int) -> None:
        moto_bounds.install()
        app = DomainDispatcherApplication(create_backend_app)

        def one_at_a_time(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            # Only DynamoDB needs it; an SQS long poll must not hold up everything else.
            if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
                return list(app(environ, start_response))
            with moto_bounds.DYNAMODB_LOCK:
                return list(app(environ, start_response))

        self._server = make_server(LOOPBACK, port, one_at_a_time, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://{LOOPBACK}:{self._server.server_port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def start_moto(port: int) -> tuple[EmbeddedAws, str]:
    server = EmbeddedAws(port)
    return server, server.url


def client(service: str, endpoint: str) -> Any:
    env = local_aws_environment(endpoint)
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def create_tables(template: Template, endpoint: str) -> dict[str, str]:
    """Create every table of the template as the template defines it; returns logical id -> name."""
    dynamodb = client("dynamodb", endpoint)
    names = {}
    for logical_id, args in template.tables().items():
        dynamodb.create_table(**args)
        names[logical_id] = args["TableName"]
    return names


def store_crm_keys(template: Template, endpoint: str, current: str, previous: str | None = None) -> None:
    """The keys as a deployment holds them: SecureStrings under the template's parameter names."""
    ssm = client("ssm", endpoint)
    ssm.put_parameter(
        Name=template.parameter("CrmTokenParameterName"), Value=current, Type="SecureString", Overwrite=True
    )
    previous_name = template.parameter("CrmTokenPreviousParameterName")
    if previous and previous_name:
        ssm.put_parameter(Name=previous_name, Value=previous, Type="SecureString", Overwrite=True)


def create_queues_buckets_and_buses(template: Template, endpoint: str) -> None:
    """The template's queues (with their redrive), buckets and event buses, as CloudFormation would."""
    sqs = client("sqs", endpoint)
    for args in template.queues().values():
        sqs.create_queue(**args)
    s3 = client("s3", endpoint)
    for logical_id in template.resources("AWS::S3::Bucket"):
        s3.create_bucket(
            Bucket=template.physical_name(logical_id), CreateBucketConfiguration={"LocationConstraint": LOCAL_REGION}
        )
    events = client("events", endpoint)
    for logical_id in template.resources("AWS::Events::EventBus"):
        events.create_event_bus(Name=template.resolve({"Ref": logical_id}))
