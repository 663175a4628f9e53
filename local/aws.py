"""The AWS side of the local run: moto's server in this process, with the template's resources.

`MotoStack` starts `moto.server.ThreadedMotoServer` on 127.0.0.1 and creates what template.yaml
declares for the checker: the DynamoDB table (from the template itself, through
`local.template.table_definition()`, so the two cannot drift apart), the SNS topic, the
secret, and an SQS queue subscribed to the topic so every alert SNS delivers can be read back
and printed. Nothing here talks to real AWS: `aws_environment()` gives dummy credentials and
points every SDK client at moto, and `apply_environment()` also drops the variables that could
send a client elsewhere (a named profile, a service-specific endpoint, a shared config file).

`SecretFile` mirrors the moto secret into a user's JSON file: refresh tokens are single-use, so
a refreshed pair that exists only in moto would lock the user out of their real portal.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from connector_monitor.tokens.credentials import parse_document
from connector_monitor.tokens.errors import CredentialsDocumentError
from local.template import table_definition

ROOT = Path(__file__).resolve().parent.parent
REGION = "eu-central-1"
ACCOUNT = "123456789012"
TABLE_NAME = "bitrix24-connector-monitor"
TOKENS_TABLE_NAME = "bitrix24-connector-monitor-tokens"
TOPIC_NAME = "bitrix24-connector-monitor-alerts"
OPERATIONS_TOPIC_NAME = "bitrix24-connector-monitor-operations"
QUEUE_NAME = "local-alert-inbox"
SECRET_NAME = "bitrix24-connector-monitor/portals"

# Variables that could take an SDK client to real AWS or to another endpoint than moto.
_UNSAFE_PREFIXES = ("AWS_ENDPOINT_URL_",)
_UNSAFE_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)
_CLIENT_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2)


def aws_environment(endpoint: str, region: str = REGION) -> dict[str, str]:
    """What every SDK client in this process needs to reach moto and only moto."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "local-run",
        "AWS_SECRET_ACCESS_KEY": "local-run",  # moto accepts any credentials
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        # Never read the user's ~/.aws: a profile there could name real credentials or endpoints.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def apply_environment(values: dict[str, str], environ: MutableMapping[str, str]) -> None:
    """Set `values` in `environ`, first removing what could redirect a client away from moto."""
    for name in list(environ):
        if name in _UNSAFE_VARIABLES or name.startswith(_UNSAFE_PREFIXES):
            del environ[name]
    environ.update(values)
    boto3.DEFAULT_SESSION = None  # a session made before now would keep the old credentials


@dataclass(frozen=True)
class ReceivedAlert:
    """One alert as SNS delivered it (through the SQS subscription)."""

    event: str
    severity: str
    subject: str
    message: str
    portal: str
    connector: str
    line: str


@dataclass(frozen=True)
class Resources:
    table: str
    topic_arn: str
    queue_url: str
    secret_id: str
    tokens_table: str
    operations_topic_arn: str = ""


class MotoStack:
    """moto's server on 127.0.0.1 plus the template's resources; `start()` / `stop()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, region: str = REGION) -> None:
        self.host = host
        self.port = port
        self.region = region
        self._server: Any | None = None
        self._resources: Resources | None = None
        self._clients: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> MotoStack:
        if self._server is not None:
            return self
        _quiet_werkzeug()
        from moto.server import ThreadedMotoServer  # slow import: only when a stack starts

        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        server.start()
        self._server = server
        self.port = int(server.get_host_and_port()[1])
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        self._clients.clear()
        if server is not None:
            server.stop()

    def __enter__(self) -> MotoStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("MotoStack is not running: call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def resources(self) -> Resources:
        if self._resources is None:
            raise RuntimeError("no resources yet: call create() first")
        return self._resources

    def environment(self) -> dict[str, str]:
        return aws_environment(self.endpoint, self.region)

    # -- resources -------------------------------------------------------------------------
    def create(self, secret: dict[str, Any]) -> Resources:
        """The table, token table, topic, queue (subscribed to the topic), the operations topic
        and the secret holding `secret`."""
        dynamodb = self.client("dynamodb")
        dynamodb.create_table(TableName=TABLE_NAME, **table_definition())
        dynamodb.create_table(TableName=TOKENS_TABLE_NAME, **table_definition("TokenTable"))
        dynamodb.get_waiter("table_exists").wait(TableName=TABLE_NAME)
        sns = self.client("sns")
        topic_arn = sns.create_topic(Name=TOPIC_NAME)["TopicArn"]
        operations_arn = sns.create_topic(Name=OPERATIONS_TOPIC_NAME)["TopicArn"]
        sqs = self.client("sqs")
        queue_url = sqs.create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        secret_id = self.client("secretsmanager").create_secret(
            Name=SECRET_NAME,
            Description="Bitrix24 OAuth credentials per portal (local run)",
            SecretString=json.dumps(secret),
        )["ARN"]
        self._resources = Resources(
            TABLE_NAME, topic_arn, queue_url, secret_id, TOKENS_TABLE_NAME, operations_arn
        )
        return self._resources

    def client(self, service: str) -> Any:
        """A boto3 client for moto that does not depend on this process's environment."""
        if service not in self._clients:
            self._clients[service] = boto3.session.Session().client(
                service,
                endpoint_url=self.endpoint,
                region_name=self.region,
                aws_access_key_id="local-run",
                aws_secret_access_key="local-run",
                config=_CLIENT_CONFIG,
            )
        return self._clients[service]

    # -- looking at it ---------------------------------------------------------------------
    def alerts(self) -> list[ReceivedAlert]:
        """Alerts SNS delivered since the last call, oldest first; removed from the queue."""
        return list(self._drain())

    def _drain(self) -> Iterator[ReceivedAlert]:
        sqs = self.client("sqs")
        queue_url = self.resources.queue_url
        while True:
            answer = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = answer.get("Messages", [])
            if not messages:
                return
            for message in messages:
                yield _parse_envelope(message["Body"])
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    def read_secret(self) -> dict[str, Any]:
        answer = self.client("secretsmanager").get_secret_value(SecretId=self.resources.secret_id)
        document: dict[str, Any] = json.loads(answer["SecretString"])
        return document


def _parse_envelope(body: str) -> ReceivedAlert:
    envelope = json.loads(body)
    attributes = {
        name: str(value.get("Value", ""))
        for name, value in (envelope.get("MessageAttributes") or {}).items()
    }
    return ReceivedAlert(
        event=attributes.get("event", "?"),
        severity=attributes.get("severity", "?"),
        subject=str(envelope.get("Subject") or ""),
        message=str(envelope.get("Message") or ""),
        portal=attributes.get("portal", ""),
        connector=attributes.get("connector", ""),
        line=attributes.get("line", ""),
    )


def _quiet_werkzeug() -> None:
    """moto's server logs every request through werkzeug; keep only errors, on stderr."""
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.setLevel(logging.ERROR)
    if not werkzeug.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.ERROR)
        werkzeug.addHandler(handler)
    werkzeug.propagate = False


class SecretFileError(Exception):
    """The secret file is missing, unreadable or not in the secret format (content never shown)."""


class SecretFile:
    """A user's secret file (the secret's format, docs/ARCHITECTURE.md) kept in step with the
    moto secret.

    `load()` reads it; `sync(document)` rewrites it, mode 0600 and atomically (a temporary file
    in the same directory, then a rename), whenever the secret differs from what the file was
    last known to hold. Call `sync` after every run and before stopping: a refresh token the
    portal issued and that only moto holds is lost when the local run ends.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._known: dict[str, Any] | None = None

    def load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SecretFileError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        try:
            document = parse_document(text, str(self.path))
        except CredentialsDocumentError as exc:
            raise SecretFileError(str(exc)) from None
        if not document["portals"]:
            raise SecretFileError(
                f'{self.path} must be a JSON object {{"portals": {{"<domain>": {{...}}}}}} '
                "with at least one portal (see the secret format in the README)"
            )
        for domain, entry in document["portals"].items():
            if not isinstance(entry, dict):
                raise SecretFileError(f"{self.path}: the entry of portal {domain} is not an object")
        self._known = document
        return dict(document)

    def sync(self, document: dict[str, Any]) -> bool:
        """Write `document` to the file if it changed; True when the file was rewritten."""
        if document == self._known:
            return False
        _write_private(self.path.resolve(), document)
        self._known = document
        return True

    def rescue(self, document: dict[str, Any]) -> Path:
        """Last resort when `sync` keeps failing: the document in a new 0600 file in $HOME."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = Path.home() / f".bitrix24-monitor-secret-{stamp}-{os.getpid()}.json"
        _write_private(target, document)
        self._known = document
        return target


def _write_private(target: Path, document: dict[str, Any]) -> None:
    """Write JSON readable by the owner only, atomically: a temporary file, then a rename."""
    descriptor, temporary = tempfile.mkstemp(prefix=".secret-", dir=target.parent)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
