"""`make run`: the local stack in the foreground.

An embedded DynamoDB and SSM (moto's server) provisioned from template.yaml, and the template's
webhook function behind a real HTTP server, all on loopback. Ctrl-C stops it.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import threading
from dataclasses import dataclass
from types import FrameType

from local.aws import LOOPBACK, client, create_tables, local_aws_environment, start_moto, store_crm_keys, use_local_aws
from local.lambdas import LocalFunction
from local.server import ApiGatewayServer
from local.template import Template

DEFAULT_CRM_TOKEN = "local-crm-token"  # noqa: S105 - the documented local default
DEMO_CONTACT = {
    "phone": "+79101234567",
    "contact_name": "ЗАО Рога и копыта (demo)",
    "responsible": "andy",
    "crm_id": "demo-1",
}


@dataclass
class LocalStack:
    template: Template
    moto_url: str
    api: ApiGatewayServer
    tables: dict[str, str]
    crm_token: str

    def summary(self) -> str:
        env = {**local_aws_environment(self.moto_url)}
        functions = self.template.functions()
        env.update({k: v for k, v in functions["WebhookFunction"].environment.items() if k.endswith("_TABLE")})
        env["PHONE_REGION"] = self.template.parameter("PhoneRegion")
        exports = "\n".join(f"  export {name}={shlex.quote(value)}" for name, value in env.items())
        webhook = self.api.url + max(path for _, path in functions["WebhookFunction"].http_routes)
        curl = (
            f"curl -s {webhook} -d cmd=contact -d phone={DEMO_CONTACT['phone'][1:]} "
            f"-d callid=demo-call-1 -d crm_token={shlex.quote(self.crm_token)}"
        )
        tables = "\n".join(f"  {logical}: {name}" for logical, name in self.tables.items())
        return f"""
pbxbridge local stack is up (Ctrl-C stops it)

Webhook (paste into a PBX simulator, or curl it):
  {webhook}   (and {self.api.url}/)
CRM key (crm_token): {self.crm_token}
Embedded DynamoDB and SSM (moto): {self.moto_url}
Tables:
{tables}

Point the console (`. .venv/bin/activate; pbxbridge ...`) and the AWS CLI at this stack:
{exports}

Try it: the demo contact ({DEMO_CONTACT["contact_name"]}, responsible {DEMO_CONTACT["responsible"]}):
  {curl}
""".rstrip()


def start(port: int, dynamodb_port: int, crm_token: str) -> tuple[LocalStack, object]:
    moto, moto_url = start_moto(dynamodb_port)
    use_local_aws(moto_url)
    template = Template()
    tables = create_tables(template, moto_url)
    store_crm_keys(template, moto_url, crm_token)
    client("dynamodb", moto_url).put_item(
        TableName=tables["ContactsTable"], Item={k: {"S": v} for k, v in DEMO_CONTACT.items()}
    )
    functions = [LocalFunction(spec) for spec in template.functions().values() if spec.http_routes]
    api = ApiGatewayServer((LOOPBACK, port), functions)
    return LocalStack(template, moto_url, api, tables, crm_token), moto


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    port = int(os.environ.get("PORT", "3000"))
    dynamodb_port = int(os.environ.get("DYNAMODB_PORT", "8000"))
    crm_token = os.environ.get("CRM_TOKEN") or DEFAULT_CRM_TOKEN
    try:
        stack, moto = start(port, dynamodb_port, crm_token)
    except OSError as exc:
        print(f"local stack: cannot start ({exc}); is PORT={port} or DYNAMODB_PORT={dynamodb_port} in use?")
        return 1
    print(stack.summary(), flush=True)

    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        threading.Thread(target=stack.api.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        stack.api.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stack.api.server_close()
        moto.stop()  # type: ignore[attr-defined]
        print("\nlocal stack stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
