"""A local stand-in for the stack's HTTP API: real HTTP on 127.0.0.1 to a real handler.

Each request becomes an API Gateway HTTP API event (payload format 2.0, shaped as API Gateway
sends it, an IAM caller included), the handler runs in this process, and its answer goes back as
status, headers and body. So `curl http://127.0.0.1:PORT/snapshot` behaves like the deployed API,
minus the SigV4 signature check.

    server = ApiServer(snapshot_api.lambda_handler, port=8080).start()
    ... server.url ...
    server.stop()

Unlike API Gateway, a request that matches no route still reaches the handler (routeKey
`$default`), so the handler's own 404/405 answers can be seen locally.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from local.handlers import LambdaContext

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

# The routes of the stack's HTTP API (template.yaml), used to fill routeKey and pathParameters.
API_ROUTES = (
    "GET /snapshot",
    "GET /snapshot/{portal}/{connector}/{line}",
    "GET /health",
    "GET /history/{portal}",
    "GET /history/{portal}/{connector}/{line}",
    "GET /",
    "GET /registry",
    "PUT /registry/{portal}/{connector}/{line}",
    "DELETE /registry/{portal}/{connector}/{line}",
)
ACCOUNT_ID = "123456789012"
API_ID = "localapi01"
REGION = "eu-central-1"
GATEWAY_ERROR = b'{"message":"Internal Server Error"}'  # what API Gateway says when a Lambda fails


@dataclass(frozen=True)
class _Route:
    key: str
    method: str
    pattern: re.Pattern[str]

    @classmethod
    def parse(cls, key: str) -> _Route:
        method, path = key.split(" ", 1)
        regex = ""
        for part in re.split(r"(\{[^}]+\})", path):
            if part.startswith("{") and part.endswith("+}"):
                regex += f"(?P<{part[1:-2]}>.+)"
            elif part.startswith("{"):
                regex += f"(?P<{part[1:-1]}>[^/]+)"
            else:
                regex += re.escape(part)
        return cls(key, method.upper(), re.compile(f"^{regex}$"))

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.method not in ("ANY", method):
            return None
        found = self.pattern.match(path)
        return found.groupdict() if found else None


def build_event(
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    routes: Sequence[str] = API_ROUTES,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """The HTTP API (payload 2.0) event API Gateway would send for this request."""
    url = urlsplit(target)
    path = url.path or "/"
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if lower == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        joined[lower] = f"{joined[lower]},{value}" if lower in joined else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(url.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    route_key, path_parameters = "$default", None
    for route in (_Route.parse(r) for r in routes):
        matched = route.match(method, path)
        if matched is not None:
            route_key, path_parameters = route.key, matched
            break
    now = time.time()
    host = joined.get("host", "127.0.0.1")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": url.query,
        "headers": joined,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "authorizer": {
                "iam": {
                    "accessKey": "ASIALOCALEXAMPLE0000",
                    "accountId": ACCOUNT_ID,
                    "callerId": "AIDALOCALCALLER000000",
                    "cognitoIdentity": None,
                    "principalOrgId": None,
                    "userArn": f"arn:aws:iam::{ACCOUNT_ID}:user/local",
                    "userId": "AIDALOCALCALLER000000",
                }
            },
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


class ApiServer:
    """Serves `handler` (an HTTP API Lambda handler) on http://host:port in a background thread."""

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        routes: Sequence[str] = API_ROUTES,
        quiet: bool = True,
    ) -> None:
        self.handler = handler
        self.routes = tuple(routes)
        self.quiet = quiet
        self._server = ThreadingHTTPServer((host, port), self._request_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ApiServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="api-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def invoke(self, event: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        """Run the handler on one event; a failing handler answers as API Gateway does (500)."""
        try:
            answer = self.handler(event, LambdaContext("snapshot-api-local", remaining_ms=10_000))
            status = int(answer["statusCode"])
        except Exception:  # the Lambda failed: API Gateway hides why
            return (
                500,
                [("Content-Type", "application/json")],
                b'{"message":"Internal Server Error"}',
            )
        headers = [(k, str(v)) for k, v in (answer.get("headers") or {}).items()]
        headers += [("Set-Cookie", c) for c in answer.get("cookies") or []]
        body = answer.get("body") or ""
        if isinstance(body, dict | list):  # a handler may return a bare JSON document
            body = json.dumps(body)
        data = base64.b64decode(body) if answer.get("isBase64Encoded") else str(body).encode()
        return status, headers, data

    def _request_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Request(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                event = build_event(
                    self.command,
                    self.path,
                    list(self.headers.items()),
                    body,
                    server.routes,
                    self.client_address[0],
                )
                status, headers, data = server.invoke(event)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def __getattr__(self, name: str) -> Any:
                # http.server looks up do_<METHOD>; every method reaches the handler, as on
                # API Gateway, which answers the ones it does not route itself.
                if name.startswith("do_"):
                    return self._handle
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:
                if not server.quiet:
                    super().log_message(format, *args)

        return _Request
