"""A loopback stand-in of the GOV.UK Notify API v2 (the parts homevisits uses), started by the tests.

``notify_standin()`` starts it on 127.0.0.1 and yields a :class:`NotifyStandIn` that the real
``notifications-python-client`` talks to (``base_url``). Like Notify it:

- checks every request's JWT: HS256 signed with the API key's secret, ``iss`` the service id in the
  key, ``iat`` within 30 seconds of now (else 403 ``AuthError``);
- accepts only the documented bodies: ``POST /v2/notifications/sms`` with ``phone_number`` and
  ``template_id`` (``personalisation``, ``reference``, ``sms_sender_id`` optional, nothing else),
  the template's placeholders all given, a valid phone number (else 400 with an ``errors`` list);
- answers 201 with Notify's response (``id``, ``reference``, ``content``, ``uri``, ``template``);
- serves ``GET /v2/notifications/{id}``, ``GET /v2/template/{id}`` and
  ``GET /v2/received-text-messages`` (newest first, ``page_size`` a page, ``older_than`` paging
  and a ``links.next`` after every page that is not empty, as Notify does);
- misbehaves on request: ``faults`` (statuses for the next send requests: 429, 500, 403...),
  ``down`` (every request 500), ``refuse`` (numbers Notify refuses for good with 400).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt

HOST = "127.0.0.1"
SERVICE_ID = "26785a09-ab16-4eb0-8407-a37497a57506"
SECRET = "3d844edf-8d35-48ac-975b-e847b4f122b0"
API_KEY = f"homevisits_test-{SERVICE_ID}-{SECRET}"
TEMPLATE_ID = "f33517ff-2a88-4f6e-b855-c550268ce08a"
SMS_FIELDS = {"phone_number", "template_id", "personalisation", "reference", "sms_sender_id"}
ERRORS = {
    400: "BadRequestError",
    403: "AuthError",
    404: "NoResultFound",
    429: "RateLimitError",
    500: "Exception",
}
MESSAGES = {
    403: "Invalid token: API key not found",
    429: "Exceeded rate limit for key type LIVE of 3000 requests per 60 seconds",
    500: "Internal server error",
}


class Refusal(Exception):
    def __init__(self, status: int, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.error = status, message, error or ERRORS.get(status, "Error")


@dataclass
class Sent:
    """One text Notify accepted."""

    id: str
    phone_number: str
    body: str
    reference: str | None
    created_at: str


@dataclass
class NotifyStandIn:
    host: str = HOST
    port: int = 0
    templates: dict[str, str] = field(default_factory=lambda: {TEMPLATE_ID: "((message))"})
    sent: list[Sent] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)  # oldest first, as added
    faults: list[int] = field(default_factory=list)  # statuses for the next send requests
    down: bool = False
    refuse: set[str] = field(default_factory=set)  # E.164 numbers refused for good
    page_size: int = 250
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request
    rejected: list[str] = field(default_factory=list)  # why requests were refused (auth, body)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------ what the tests add

    def text_from(self, user_number: str, content: str, at: dt.datetime | None = None) -> str:
        """A text a member of staff sent to the service's number: its id."""
        moment = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        text_id = str(uuid.uuid4())
        with self.lock:
            self.received.append(
                {
                    "id": text_id,
                    "user_number": user_number.lstrip("+"),
                    "notify_number": "07700900000",
                    "created_at": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "service_id": SERVICE_ID,
                    "content": content,
                }
            )
        return text_id

    # ------------------------------------------------------------ the API

    def authenticate(self, header: str | None) -> None:
        if not header or not header.startswith("Bearer "):
            raise Refusal(401, "Unauthorized: authentication token must be provided", "AuthError")
        token = header.removeprefix("Bearer ")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            head = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Refusal(403, "Invalid token: signature, api token is not valid") from exc
        if head.get("alg") != "HS256" or head.get("typ") != "JWT":
            raise Refusal(403, "Invalid token: algorithm used is not HS256")
        if unverified.get("iss") != SERVICE_ID:
            raise Refusal(403, "Invalid token: service not found")
        try:
            claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_iat": False})
        except jwt.PyJWTError as exc:
            raise Refusal(403, "Invalid token: signature, api token not found") from exc
        iat = claims.get("iat")
        if not isinstance(iat, int) or abs(time.time() - iat) > 30:
            raise Refusal(403, "Error: Your system clock must be accurate to within 30 seconds")

    def send_sms(self, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict):
            raise Refusal(400, "Invalid JSON supplied in POST data", "ValidationError")
        extra = sorted(set(body) - SMS_FIELDS)
        if extra:
            raise Refusal(
                400,
                f"Additional properties are not allowed ({', '.join(extra)} was unexpected)",
                "ValidationError",
            )
        for name in ("phone_number", "template_id"):
            if not isinstance(body.get(name), str):
                raise Refusal(400, f"{name} is a required property", "ValidationError")
        template = self.templates.get(body["template_id"])
        if template is None:
            raise Refusal(400, "Template not found")
        personalisation = body.get("personalisation") or {}
        if not isinstance(personalisation, dict):
            raise Refusal(400, "personalisation is not of type object", "ValidationError")
        missing = [p for p in re.findall(r"\(\(([^)]+)\)\)", template) if p not in personalisation]
        if missing:
            raise Refusal(400, f"Missing personalisation: {', '.join(missing)}")
        number = body["phone_number"]
        if not re.fullmatch(r"\+447\d{9}", number):
            raise Refusal(400, "phone_number Not a UK mobile number", "ValidationError")
        if number in self.refuse:
            raise Refusal(400, "Can't send to this recipient using a team-only API key")
        with self.lock:
            if self.faults:
                status = self.faults.pop(0)
                raise Refusal(status, MESSAGES.get(status, "error"))
        content = re.sub(r"\(\(([^)]+)\)\)", lambda m: str(personalisation[m.group(1)]), template)
        text = Sent(
            str(uuid.uuid4()),
            number,
            content,
            body.get("reference"),
            dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        )
        with self.lock:
            self.sent.append(text)
        return 201, {
            "id": text.id,
            "reference": text.reference,
            "content": {"body": content, "from_number": "HOMEVISITS"},
            "uri": f"{self.base_url}/v2/notifications/{text.id}",
            "template": {
                "id": body["template_id"],
                "version": 1,
                "uri": f"{self.base_url}/services/{SERVICE_ID}/templates/{body['template_id']}",
            },
        }

    def notification(self, notification_id: str) -> dict[str, Any]:
        for text in self.sent:
            if text.id == notification_id:
                return {
                    "id": text.id,
                    "reference": text.reference,
                    "phone_number": text.phone_number,
                    "type": "sms",
                    "status": "delivered",
                    "body": text.body,
                    "created_at": text.created_at,
                }
        raise Refusal(404, "No result found")

    def template(self, template_id: str) -> dict[str, Any]:
        body = self.templates.get(template_id)
        if body is None:
            raise Refusal(404, "No result found")
        return {
            "id": template_id,
            "type": "sms",
            "version": 1,
            "body": body,
            "subject": None,
            "name": "homevisits",
        }

    def received_texts(self, older_than: str | None) -> dict[str, Any]:
        with self.lock:
            newest_first = list(reversed(self.received))
        if older_than:
            ids = [t["id"] for t in newest_first]
            if older_than not in ids:
                return {"received_text_messages": [], "links": {"current": self._page_url(older_than)}}
            newest_first = newest_first[ids.index(older_than) + 1 :]
        page = newest_first[: self.page_size]
        links = {"current": self._page_url(older_than)}
        if page:  # as Notify does: a next link after every page that is not empty
            links["next"] = self._page_url(page[-1]["id"])
        return {"received_text_messages": page, "links": links}

    def _page_url(self, older_than: str | None) -> str:
        url = f"{self.base_url}/v2/received-text-messages"
        return f"{url}?older_than={older_than}" if older_than else url

    def handle(self, method: str, url: str, headers: Any, raw: bytes) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(url)
        with self.lock:
            self.requests.append((method, parts.path))
        if self.down:
            raise Refusal(500, MESSAGES[500])
        self.authenticate(headers.get("Authorization"))
        if method == "POST" and parts.path == "/v2/notifications/sms":
            if headers.get("Content-type", "").split(";")[0] != "application/json":
                raise Refusal(400, "Content-type must be application/json")
            try:
                body = json.loads(raw or b"null")
            except ValueError as exc:
                raise Refusal(400, "Invalid JSON supplied in POST data", "ValidationError") from exc
            return self.send_sms(body)
        if method == "GET" and parts.path == "/v2/received-text-messages":
            query = parse_qs(parts.query)
            return 200, self.received_texts((query.get("older_than") or [None])[0])
        if method == "GET" and (found := re.fullmatch(r"/v2/notifications/([0-9a-f-]{36})", parts.path)):
            return 200, self.notification(found.group(1))
        if method == "GET" and (found := re.fullmatch(r"/v2/template/([0-9a-f-]{36})", parts.path)):
            return 200, self.template(found.group(1))
        raise Refusal(404, "Not Found")


def _handler(standin: NotifyStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                status, answer = standin.handle(method, self.path, self.headers, raw)
            except Refusal as exc:
                standin.rejected.append(f"{exc.status} {exc.message}")
                status = exc.status
                answer = {"status_code": status, "errors": [{"error": exc.error, "message": exc.message}]}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler


@contextlib.contextmanager
def notify_standin(**settings: Any) -> Iterator[NotifyStandIn]:
    standin = NotifyStandIn(**settings)
    server = ThreadingHTTPServer((HOST, 0), _handler(standin))
    standin.port = server.server_address[1]
    # serve_forever looks for shutdown() every poll_interval (0.5 s by default): every test using the
    # stand-in waited that long at its end, as in sheets_standin.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
