"""`make run`: the local stack in the foreground.

An embedded DynamoDB and SSM (moto's server) provisioned from template.yaml; the template's
functions behind a real HTTP server (the HTTP API routes, and the Lambda Invoke API); and the PBX
simulator, pointed at the webhook, with the commands function pointed at it. All on loopback.
Ctrl-C stops it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shlex
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from local.aws import (
    LOOPBACK,
    client,
    create_queues_buckets_and_buses,
    create_tables,
    local_aws_environment,
    start_moto,
    store_crm_keys,
    use_local_aws,
)
from local.crm_forwarding import Forwarding, ForwardingError, crm_url_parameters, local_crm_parameters, run_forwarding
from local.crm_receiver import CrmReceiver, ReceiverAuth
from local.event_schemas import schema_files
from local.lambdas import LocalFunction
from local.logs import json_logs, use_short_logs
from local.parameters import PARAMS_VARIABLE, ParameterError, checked, parameters_from_environment
from local.pbx_simulator import PbxSimulator, SimulatorServer
from local.server import ApiGatewayServer
from local.snapshot import RestoreReport, restore, save
from local.sources import run_sources
from local.template import Template, load_template
from local.widget import LocalWidget, issue_token, start_widget

DEFAULT_CRM_TOKEN = "local-crm-token"  # noqa: S105 - the documented local default
DEFAULT_PBX_TOKEN = "local-pbx-token"  # noqa: S105
DEMO_CONTACT = {
    "phone": "+79101234567",
    "contact_name": "ЗАО Рога и копыта (demo)",
    "responsible": "andy",
    "crm_id": "demo-1",
}
# The printed missed call's number: no contact, so its call-back belongs to the user it rang.
MISSED_DEMO_PHONE = "79035550123"


@dataclass
class LocalStack:
    template: Template
    moto_url: str
    api: ApiGatewayServer
    pbx: SimulatorServer
    tables: dict[str, str]
    crm_token: str
    pbx_token: str
    schedules: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    widget: LocalWidget | None = None
    widget_token: str = ""
    crm: Forwarding | None = None  # forwarding to a CRM's URL (CRM_RECEIVER=1 or CRM_URL)
    crm_receiver: CrmReceiver | None = None
    # Where the data is kept across restarts (None: nowhere), and what the start found there.
    data_file: Path | None = None
    restored: RestoreReport | None = None
    directory: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)  # the template parameters chosen (PARAMS)

    def stop_servers(self) -> None:
        """Stop what the stack serves beside its API: the simulator, the WebSocket, the stand-in CRM."""
        self.pbx.stop()
        if self.widget is not None:
            self.widget.socket.stop()
        if self.crm_receiver:
            self.crm_receiver.stop()

    def save_data(self) -> None:
        """Keep every table's items and bucket's objects for the next start (see local.snapshot)."""
        if self.data_file is not None:
            save(self.data_file, self.moto_url, list(self.tables.values()), self._buckets())

    def _buckets(self) -> list[str]:
        return [self.template.physical_name(b) for b in self.template.resources("AWS::S3::Bucket")]

    @property
    def webhook_url(self) -> str:
        routes = self.template.functions()["WebhookFunction"].http_routes
        return self.api.url + max(path for _, path in routes)

    def environment(self) -> dict[str, str]:
        """What points the console and the AWS CLI at this stack."""
        env = local_aws_environment(self.moto_url)
        env["AWS_ENDPOINT_URL_LAMBDA"] = self.api.url
        for spec in self.template.functions().values():
            env.update({k: v for k, v in spec.environment.items() if k.endswith("_TABLE")})
        env["PHONE_REGION"] = self.template.parameter("PhoneRegion")
        env["COMMANDS_FUNCTION"] = "CommandsFunction"
        env["PBX_URL"] = self.template.parameter("PbxUrl")
        env["PBX_TOKEN"] = self.pbx_token
        if "PbxApi" in self.template.parameters:
            env["PBX_API"] = self.template.parameters["PbxApi"]
        return env

    def widget_summary(self) -> str:
        if self.widget is None:
            return ""
        return f"""The widget (the demo user andy's page; a call that rings andy pops its card there):
  {self.widget.url_for(self.widget_token)}
  WebSocket API: {self.widget.socket.url}  (management API {self.widget.socket.management_url})
Ring andy with an inbound call from the demo contact, step by step: the card pops up, is answered, ends:
  curl -s {self.pbx.url}/_simulator/inbound -d '{{"phone": "79101234567", "user": "andy", "pace": 2}}'
Miss a call from a number nobody knows: it rang andy, so it waits in his call-back list (its button calls back):
  curl -s {self.pbx.url}/_simulator/inbound -d '{{"phone": "{MISSED_DEMO_PHONE}", "user": "andy", "answer": false}}'
A token for another user: pbxbridge invoke issueWidgetToken user=mike"""

    def summary(self) -> str:
        exports = "\n".join(f"  export {name}={shlex.quote(value)}" for name, value in self.environment().items())
        curl = (
            f"curl -s {self.webhook_url} -d cmd=contact -d phone={DEMO_CONTACT['phone'][1:]} "
            f"-d callid=demo-call-1 -d crm_token={shlex.quote(self.crm_token)}"
        )
        tables = "\n".join(f"  {logical}: {name}" for logical, name in self.tables.items())
        return f"""
pbxbridge local stack is up (Ctrl-C stops it)

Webhook (what the PBX posts to):
  {self.webhook_url}   (and {self.api.url}/)
CRM key (crm_token): {self.crm_token}
Commands: Lambda Invoke API at {self.api.url} (function CommandsFunction), IAM-signed POST {self.api.url}/commands
PBX simulator: {self.pbx.api_url} and {self.pbx.v1_url}  key {self.pbx_token}  (pushes to the webhook above)
  the functions use {self.template.parameter("PbxUrl")}{self._pbx_api_line()}
Embedded DynamoDB and SSM (moto): {self.moto_url}
Tables:
{tables}

Point the console (`. .venv/bin/activate; pbxbridge ...`) and the AWS CLI at this stack:
{exports}

Try it: the demo contact ({DEMO_CONTACT["contact_name"]}, responsible {DEMO_CONTACT["responsible"]}):
  {curl}
Place a call through the simulator, then read it back with its timeline:
  pbxbridge invoke makeCall user=708 phone=79101234567      # 708: andy, by his extension
  pbxbridge invoke getCall callid=<call_id printed by makeCall>
Have the simulator play calls, losing 30% of single pushes and a quarter of whole calls (every push),
then reconcile from the PBX's history and see every call:
  curl -s {self.pbx.url}/_simulator/calls -d '{{"count": 20, "drop": 0.3, "duplicate": 0.1, "lose_calls": 0.25}}'
  pbxbridge sync history --period today
  pbxbridge invoke listCalls user=702        # mike, by his extension
  (created: calls the webhook never saw, every push lost, now stored from the history;
   merged: calls the webhook stored in part, completed from the history (wait, via, outcome);
   already_reconciled: calls an earlier run handled: run it twice and the second only reads)
Directory: {self._directory_line()}
{self.widget_summary()}
Missed calls wait in their owner's call-back list until an answered call with the number closes them:
  pbxbridge invoke listCallbacks owner=andy        (status=closed for the returned ones)
Template parameters: {self._parameters_line()}
Schedules run here as on AWS: {", ".join(self.schedules) or "none"}
Event sources run here as on AWS: {", ".join(self.sources) or "none"}
Call events are logged below ("call event published"); recordings land in the bucket RecordingsBucket:
  aws s3 ls s3://RecordingsBucket/recordings/ --recursive
Data: {self._data_line()}
Log: one line per request below; LOG_FORMAT=json make run shows the functions' JSON (and metrics) as CloudWatch gets it.
{self.crm_summary()}""".rstrip()

    def crm_summary(self) -> str:
        if self.crm is None:
            return "Forward call events to a CRM: make run CRM_RECEIVER=1 (a receiver prints them), or CRM_URL=..."
        receiver = " (the local CRM receiver prints each below)" if self.crm_receiver else ""
        selected = self.crm.pattern.get("detail-type", [])
        types = ", ".join(selected or ["every call event"])
        # The template takes any name (a deploy would too): a typo would forward nothing, so say so.
        unknown = sorted(set(selected) - set(schema_files()))
        if unknown:
            types += f"\n  NOT call events pbxbridge publishes (see schemas/events): {', '.join(unknown)}"
        secret = self.template.parameter("CrmSecretName")
        return (
            f"Call events forwarded to the CRM at {self.crm.endpoint}{receiver}:\n  {types}\n"
            f"  auth {self.crm.auth_type} from the secret {secret}; each retried on its own "
            f"(up to {self.crm.max_retries} times), undelivered ones: "
            f"aws sqs receive-message --queue-url {self.template.resolve({'Ref': 'CrmDeadLetterQueue'})}"
        )

    def _parameters_line(self) -> str:
        chosen = " ".join(shlex.quote(f"{name}={value}") for name, value in sorted(self.parameters.items()))
        if not chosen:
            return (
                f'the template\'s defaults; set any as a deployment does: make run {PARAMS_VARIABLE}="Name=Value ..." '
                '(e.g. "ScenarioMissedCallLeads=true CrmEventTypes=LeadCreated,CallMissed")'
            )
        return f"{chosen} (the rest the template's defaults)"

    def _pbx_api_line(self) -> str:
        chosen = self.template.parameters.get("PbxApi")
        return f" (PBX_API={chosen})" if chosen else " (make run PBX_API=v1 or auto: crmapi/v1, or probed)"

    def _directory_line(self) -> str:
        result = self.directory.get("result")
        if not self.directory.get("ok") or not isinstance(result, dict):
            problem = (self.directory.get("error") or {}).get("message", "not run")
            return f"not synced at start ({problem}); pbxbridge invoke syncDirectory"
        return (
            f"{result['users']} users and {result['departments']} departments synced from the PBX at start "
            "(then daily), so listUsers, listCalls user=708 and calls' logins resolve at once"
        )

    def _data_line(self) -> str:
        if self.data_file is None:
            return "in memory only: gone when the stack stops"
        restored = f"restored {self.restored.summary()}; " if self.restored and self.restored.items else ""
        return (
            f"{restored}saved to {self.data_file} when the stack stops (Ctrl-C), restored at the next start; "
            "`make run FRESH=1` starts empty"
        )


def rate_seconds(expression: str) -> float | None:
    """`rate(10 minutes)` -> 600; other expressions (cron) are not run locally."""
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression.strip())
    if not match:
        return None
    unit = {"minute": 60, "hour": 3600, "day": 86400}[match[2].rstrip("s")]
    return int(match[1]) * unit


def run_schedules(functions: list[LocalFunction], stopping: threading.Event) -> list[str]:
    """EventBridge Scheduler's part: each ScheduleV2 rate of the template invokes its function."""
    started = []
    for function in functions:
        for expression, payload in function.spec.schedules:
            every = rate_seconds(expression)
            if every is None:
                continue

            def tick(function: LocalFunction = function, every: float = every, payload: str = payload) -> None:
                while not stopping.wait(every):
                    try:
                        function.invoke(json.loads(payload))
                    except Exception:
                        logging.getLogger("local.schedule").exception("%s failed", function.spec.logical_id)

            threading.Thread(target=tick, daemon=True).start()
            started.append(f"{function.spec.logical_id} {expression}")
    return started


def _local_crm(moto_url: str, crm_url: str | None, api_key: str | None) -> tuple[dict[str, str], CrmReceiver | None]:
    """Forwarding to a CRM's URL: `crm_url` with `api_key`, or with crm_url "receiver" a local
    receiver that prints what arrives. No URL: forwarding off, as in the template by default."""
    if not crm_url:
        return {}, None
    receiver = None
    if crm_url == "receiver":
        api_key = api_key or secrets.token_urlsafe(16)
        port = int(os.environ.get("CRM_RECEIVER_PORT", "3200"))
        receiver = CrmReceiver(
            port, ReceiverAuth(api_key=api_key), echo=lambda text: print(text, flush=True), keep=False
        )
        crm_url = f"{receiver.start().url}/pbxbridge/events"
    return local_crm_parameters(moto_url, crm_url, api_key or ""), receiver


PBX_APIS = ("legacy", "v1", "auto")


def pbx_parameters(pbx: SimulatorServer, pbx_api: str | None) -> dict[str, str]:
    """The template's PBX parameters for the simulator: PBX_API=v1 gives the functions its crmapi/v1
    URL, `auto` the bare base URL (the client probes it), `legacy` or none the old API's URL."""
    if pbx_api is None:
        return {"PbxUrl": pbx.api_url}
    if pbx_api not in PBX_APIS:
        raise ValueError(f"PBX_API={pbx_api!r}: choose one of {', '.join(PBX_APIS)}")
    url = {"legacy": pbx.api_url, "v1": pbx.v1_url, "auto": pbx.url}[pbx_api]
    return {"PbxUrl": url, "PbxApi": pbx_api}


@contextlib.contextmanager
def serving(**options: Any) -> Iterator[LocalStack]:
    """The stack `start(**options)` makes, its API served from a thread, and all of it stopped
    afterwards (the tests and the benchmarks; `make run` serves from its main thread and saves data)."""
    stack, moto = start(**options)
    threading.Thread(target=stack.api.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield stack
    finally:
        stack.stopping.set()
        stack.api.shutdown()
        stack.api.server_close()
        stack.stop_servers()
        moto.stop()  # type: ignore[attr-defined]


# What CRM_URL and CRM_RECEIVER=1 set (with the secret they store); PARAMS may not set them too.
_CRM_URL_PARAMETERS = frozenset(crm_url_parameters("https://crm.example"))


def check_parameters(parameters: dict[str, str], crm_url: str | None = None) -> dict[str, str]:
    """The parameters chosen for the stack, checked as CloudFormation checks them at deploy time: each
    against its declaration, then all of them against the template's Rules. Before anything starts."""
    template = Template(body=load_template())
    chosen = checked(parameters, template.body)
    if crm_url:
        clash = sorted(_CRM_URL_PARAMETERS & set(chosen))
        if clash:
            given = "CRM_RECEIVER=1" if crm_url == "receiver" else "CRM_URL"
            raise ParameterError(
                f"{', '.join(clash)}: set by {given} (with the secret it stores); not in {PARAMS_VARIABLE} too"
            )
        template.parameters = {**crm_url_parameters("https://crm.example"), **chosen}
    else:
        template.parameters = dict(chosen)
    failures = template.rule_failures()
    if failures:
        raise ParameterError("the template's Rules refuse these parameters:\n  " + "\n  ".join(failures))
    return chosen


def start(
    port: int,
    dynamodb_port: int,
    crm_token: str,
    pbx_port: int = 0,
    pbx_token: str = DEFAULT_PBX_TOKEN,
    crm_url: str | None = None,
    crm_api_key: str | None = None,
    parameters: dict[str, str] | None = None,
    widget_socket_port: int = 0,
    data_file: Path | None = None,
    short_logs: bool = False,
    pbx_api: str | None = None,
) -> tuple[LocalStack, object]:
    """The stack, up. With `data_file`, the data saved there by `LocalStack.save_data` is put back first.
    `parameters` are template parameters, as `sam deploy --parameter-overrides` gives them (ParameterError
    before anything starts if the template would refuse them)."""
    chosen = check_parameters(parameters or {}, crm_url)
    moto, moto_url = start_moto(dynamodb_port)
    use_local_aws(moto_url)
    simulator = PbxSimulator(token=pbx_token, crm_token=crm_token)
    pbx = simulator.serve(pbx_port, LOOPBACK)
    crm_parameters, receiver = _local_crm(moto_url, crm_url, crm_api_key)
    # DEBUG: the local log shows every `contact` answered too, which Lambda leaves out at INFO.
    # PBX_API and PARAMS="PbxApi=..." say the same thing: either picks the simulator URL that goes with it.
    defaults = {**pbx_parameters(pbx, pbx_api or chosen.get("PbxApi")), "LogLevel": "DEBUG"}
    template = Template(parameters={**defaults, **crm_parameters, **chosen}, endpoint=moto_url)
    tables = create_tables(template, moto_url)
    create_queues_buckets_and_buses(template, moto_url)
    # The simulator serves recordings over plain http on loopback: allowed here, never in Lambda.
    os.environ["RECORDINGS_ALLOW_LOCAL_HTTP"] = "true"
    # Every function, its pollers and the embedded AWS share this one process (and its GIL), where
    # Lambda gives the webhook its own: its push budgets (a second for `contact`) are for Lambda's.
    os.environ.setdefault("CONTACT_BUDGET_SECONDS", "3")
    os.environ.setdefault("CONTACT_ATTEMPT_SECONDS", "1.5")
    store_crm_keys(template, moto_url, crm_token)
    client("ssm", moto_url).put_parameter(
        Name=template.parameter("PbxTokenParameterName"), Value=pbx_token, Type="SecureString", Overwrite=True
    )
    buckets = [template.physical_name(b) for b in template.resources("AWS::S3::Bucket")]
    # Before any stream is read: what is restored is not published as new calls again.
    restored = restore(data_file, moto_url, list(tables.values()), buckets) if data_file else None
    client("dynamodb", moto_url).put_item(
        TableName=tables["ContactsTable"], Item={k: {"S": v} for k, v in DEMO_CONTACT.items()}
    )
    functions = [LocalFunction(spec) for spec in template.functions().values()]
    api = ApiGatewayServer((LOOPBACK, port), functions)
    stack = LocalStack(template, moto_url, api, pbx, tables, crm_token, pbx_token, data_file=data_file)
    stack.restored = restored
    stack.parameters = chosen
    if short_logs:  # the functions' loggers exist once their modules are loaded
        use_short_logs()
        api.access_log = False
    # The directory's schedule is daily: sync it now, so users and their extensions resolve from the start.
    stack.directory = sync_directory_now(functions)
    stack.schedules = run_schedules(functions, stack.stopping)
    stack.sources = run_sources(template, functions, stack.stopping)
    stack.crm, stack.crm_receiver = run_forwarding(template, moto_url, stack.stopping), receiver
    simulator.crm_url = stack.webhook_url
    # The widget (issue 9): its WebSocket API and a demo user's token (the directory synced above).
    stack.widget = start_widget(template, functions, moto_url, api.url, socket_port=widget_socket_port)
    commands = next(f for f in functions if f.spec.logical_id == "CommandsFunction")
    stack.widget_token = issue_token(commands)["token"]
    return stack, moto


def sync_directory_now(functions: list[LocalFunction]) -> dict[str, Any]:
    commands = next((f for f in functions if f.spec.logical_id == "CommandsFunction"), None)
    if commands is None:
        return {}
    try:
        answer: dict[str, Any] = commands.invoke({"cmd": "syncDirectory"})
    except Exception as exc:
        return {"ok": False, "error": {"message": f"{type(exc).__name__}: {exc}"}}
    return answer


def ports_in_use(ports: dict[str, int]) -> list[str]:
    """The variables whose port something already listens on (moto's server would exit without naming
    the variable), as the servers bind: loopback, address reuse on."""
    taken = []
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                taken.append(name)
    return taken


def data_file_from_environment() -> Path | None:
    """LOCAL_DATA (default .local-data/state.json; `none` keeps nothing); FRESH=1 discards what was kept."""
    setting = os.environ.get("LOCAL_DATA", ".local-data/state.json").strip()
    if setting.lower() in ("", "none", "off"):
        return None
    path = Path(setting)
    if os.environ.get("FRESH", "").strip().lower() in ("1", "true", "yes") and path.exists():
        path.replace(path.with_suffix(".previous.json"))  # one step back, should FRESH=1 be a slip
    return path


def main() -> int:
    short = not json_logs()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)-20s %(message)s" if short else "%(asctime)s %(name)s %(message)s",
        datefmt="%H:%M:%S" if short else None,
    )
    for noisy in ("werkzeug", "botocore"):  # moto's server logs every request; botocore its credentials
        logging.getLogger(noisy).setLevel(logging.WARNING)
    port = int(os.environ.get("PORT", "3000"))
    dynamodb_port = int(os.environ.get("DYNAMODB_PORT", "8000"))
    pbx_port = int(os.environ.get("PBX_PORT", "3100"))
    crm_token = os.environ.get("CRM_TOKEN") or DEFAULT_CRM_TOKEN
    crm_url = "receiver" if os.environ.get("CRM_RECEIVER") not in (None, "", "0") else os.environ.get("CRM_URL")
    try:
        parameters = check_parameters(parameters_from_environment(os.environ, load_template()), crm_url)
    except ParameterError as exc:
        print(f"local stack: cannot start: {exc}")
        return 2
    pbx_api = os.environ.get("PBX_API", "").strip().lower() or None
    if pbx_api is not None and pbx_api not in PBX_APIS:
        print(f"local stack: PBX_API={pbx_api} is not one of {', '.join(PBX_APIS)}")
        return 1
    widget_socket_port = int(os.environ.get("WIDGET_SOCKET_PORT", "3001"))
    ports = {"PORT": port, "DYNAMODB_PORT": dynamodb_port, "PBX_PORT": pbx_port}
    ports["WIDGET_SOCKET_PORT"] = widget_socket_port
    if crm_url == "receiver":
        ports["CRM_RECEIVER_PORT"] = int(os.environ.get("CRM_RECEIVER_PORT", "3200"))
    taken = ports_in_use({name: number for name, number in ports.items() if number})
    if taken:
        listed = ", ".join(f"{name}={ports[name]}" for name in taken)
        others = " ".join(f"{name}={ports[name] + 10}" for name in taken)
        print(f"local stack: cannot start: {listed} already in use (another stack?); choose others: make run {others}")
        return 1
    try:
        crm_api_key = os.environ.get("CRM_API_KEY")
        stack, moto = start(
            port,
            dynamodb_port,
            crm_token,
            pbx_port,
            crm_url=crm_url,
            crm_api_key=crm_api_key,
            parameters=parameters,
            widget_socket_port=widget_socket_port,
            data_file=data_file_from_environment(),
            short_logs=short,
            pbx_api=pbx_api,
        )
    except OSError as exc:
        listed = ", ".join(f"{name}={number}" for name, number in ports.items())
        print(f"local stack: cannot start ({exc}); is one of {listed} in use?")
        return 1
    except ForwardingError as exc:  # e.g. PARAMS named a CrmSecretName the embedded AWS does not hold
        print(f"local stack: cannot start the forwarding to the CRM: {exc}")
        return 2
    print(stack.summary(), flush=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=stack.api.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)  # the terminal closed: stop as cleanly, data saved
    try:
        stack.api.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stopping.set()
        stack.api.server_close()
        stack.stop_servers()
        try:
            stack.save_data()
        except Exception as exc:
            print(f"\nlocal stack: could not save the data to {stack.data_file}: {exc}", flush=True)
        moto.stop()  # type: ignore[attr-defined]
        kept = f"; data kept in {stack.data_file}" if stack.data_file else ""
        print(f"\nlocal stack stopped{kept}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
