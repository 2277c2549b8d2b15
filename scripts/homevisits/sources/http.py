"""The one road to Google: the service-account key, the HTTP session, bounded retries, what failures mean.

Every request to the Sheets API goes through :class:`RetryingHTTPClient` (a gspread ``HTTPClient``):
408, 429 and 5xx answers are retried with truncated exponential backoff and jitter under one bounded
budget, well inside the five-minute cron interval, then turned into one sentence by :func:`explain`.
A request that could have changed the sheet is retried only when Google refused it before doing
anything (429); an append is never retried.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from gspread.exceptions import APIError
from gspread.http_client import HTTPClient
from requests.adapters import HTTPAdapter

from ..errors import HomevisitsError

SHEETS_ROOT = "https://sheets.googleapis.com"
DRIVE_ROOT = "https://www.googleapis.com"  # Drive v3: drive/v3/... and upload/drive/v3/...
SCOPES = (
    "https://www.googleapis.com/auth/spreadsheets",
)  # the sheets the account is shared on, nothing else
# Only when [source] drive_file is set: a service account may replace the content of a file it did not
# create (the school's workbook on a Shared Drive) only with the full drive scope; drive.file covers only
# files the app itself created or was handed by a picker. Access stays limited to what is shared with it.
DRIVE_SCOPES = (*SCOPES, "https://www.googleapis.com/auth/drive")
CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
ENDPOINT_ENV = "HOMEVISITS_SHEETS_ENDPOINT"  # tests only: a loopback stand-in of the Sheets API

ALWAYS, REFUSED_ONLY, NEVER = "always", "refused-only", "never"
# spreadsheets:batchUpdate requests that leave the same sheet when repeated
IDEMPOTENT_REQUESTS = frozenset(
    {
        "updateCells",
        "repeatCell",
        "updateSheetProperties",
        "setDataValidation",
        "updateDimensionProperties",
        "updateSpreadsheetProperties",
        "updateBorders",
        "setBasicFilter",
        "clearBasicFilter",
    }
)
STATUS_WORDS = {
    408: "request timeout",
    429: "too many requests",
    500: "internal error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: at most ``attempts`` tries, waits doubling from ``first_wait`` up to
    ``max_wait`` with jitter, and no retry that would end more than ``budget`` seconds after the
    first try began. ``timeout`` is (connect, read) seconds for each request."""

    attempts: int = 7
    first_wait: float = 1.0
    max_wait: float = 32.0
    budget: float = 120.0
    timeout: tuple[float, float] = (10.0, 45.0)


class Backoff:
    """One operation's retry budget: each :meth:`wait` sleeps before the next try, or says stop."""

    def __init__(
        self,
        policy: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.policy, self.sleep, self.clock, self.rng = policy, sleep, clock, rng
        self.started = clock()
        self.tries = 1
        self.waited = 0.0

    def delay(self, retry_after: float | None = None) -> float:
        """Equal jitter over a doubling, truncated step: never zero, never above ``max_wait``."""
        step = min(self.policy.max_wait, self.policy.first_wait * 2 ** (self.tries - 1))
        wait = step / 2 + self.rng() * step / 2
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.policy.max_wait))
        return wait

    def wait(self, retry_after: float | None = None) -> bool:
        """Sleep before another try and return True, or return False when tries or time are used up."""
        if self.tries >= self.policy.attempts:
            return False
        wait = self.delay(retry_after)
        if self.clock() - self.started + wait > self.policy.budget:
            return False
        self.sleep(wait)
        self.waited += wait
        self.tries += 1
        return True


def retry_mode(method: str, url: str, body: Mapping[str, Any] | None) -> str:
    """How a request may be retried: ``always`` (reads, idempotent formatting), ``refused-only``
    (writes: only after a 429, which Google answers before doing anything), ``never`` (appends)."""
    path = urlsplit(url).path
    if path.endswith(":append"):
        return NEVER
    if method.upper() == "GET":
        return ALWAYS
    if path.endswith(":batchUpdate") and "/values" not in path:
        kinds = {name for request in (body or {}).get("requests", []) for name in request}
        return ALWAYS if kinds <= IDEMPOTENT_REQUESTS else REFUSED_ONLY
    return REFUSED_ONLY


RATE_LIMITED = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})  # Drive answers these with 403


def rate_limited(exc: APIError) -> bool:
    """Throttled: a 429, or Drive's 403 whose reason is a rate limit (Google did nothing)."""
    if exc.code == 429:
        return True
    reasons = {e.get("reason") for e in exc.error.get("errors", []) if isinstance(e, dict)}
    return exc.code == 403 and bool(reasons & RATE_LIMITED)


def is_transient(exc: BaseException) -> bool:
    """A failure worth trying again: 408, 429 (or Drive's rate-limit 403), 5xx, or the connection dropping."""
    if isinstance(exc, APIError):
        return exc.code == 408 or rate_limited(exc) or 500 <= exc.code <= 599
    return isinstance(exc, requests.ConnectionError | requests.Timeout)


def _refused(exc: BaseException) -> bool:
    """Google did nothing: rate-limited, or the connection never opened."""
    if isinstance(exc, APIError):
        return rate_limited(exc)
    if isinstance(exc, requests.ConnectTimeout):
        return True
    return isinstance(exc, requests.ConnectionError) and "NewConnectionError" in repr(exc)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class RetryingHTTPClient(HTTPClient):
    """gspread's transport with bounded retries and a request count.

    Inside ``with client.operation():`` every request shares one :class:`Backoff`, so a whole
    read-locate-write stays inside one budget; outside, each request gets its own.
    """

    def __init__(
        self,
        auth: Any,
        session: requests.Session | None = None,
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(auth, session)
        self.policy = policy or RetryPolicy()
        self.sleep, self.clock, self.rng = sleep, clock, rng
        self.timeout = self.policy.timeout
        self.requests_made = 0
        self._shared: Backoff | None = None

    def backoff(self) -> Backoff:
        return self._shared or Backoff(self.policy, self.sleep, self.clock, self.rng)

    @contextlib.contextmanager
    def operation(self) -> Iterator[Backoff]:
        outer = self._shared
        self._shared = outer or Backoff(self.policy, self.sleep, self.clock, self.rng)
        try:
            yield self._shared
        finally:
            self._shared = outer

    def request(self, method: str, endpoint: str, *args: Any, **kwargs: Any) -> requests.Response:
        mode = retry_mode(method, endpoint, kwargs.get("json"))
        backoff = self.backoff()
        while True:
            self.requests_made += 1
            try:
                return super().request(method, endpoint, *args, **kwargs)
            except (APIError, requests.ConnectionError, requests.Timeout) as exc:
                retry = is_transient(exc) and (mode == ALWAYS or (mode == REFUSED_ONLY and _refused(exc)))
                if not (retry and backoff.wait(_retry_after(exc))):
                    exc.homevisits_tries = backoff.tries  # type: ignore[union-attr]
                    exc.homevisits_waited = backoff.waited  # type: ignore[union-attr]
                    raise


# ---------------------------------------------------------------- credentials and session


@dataclass(frozen=True)
class ServiceAccount:
    credentials: Any  # google.oauth2.service_account.Credentials
    client_email: str
    path: Path


def load_service_account(
    path: str | os.PathLike[str] | None, scopes: tuple[str, ...] = SCOPES
) -> ServiceAccount:
    """The service-account key named in the config, else by GOOGLE_APPLICATION_CREDENTIALS."""
    from google.oauth2 import service_account

    where = path or os.environ.get(CREDENTIALS_ENV)
    if not where:
        raise HomevisitsError(
            "No Google service-account key is set: put the path of its JSON key file in [source] credentials "
            f"in the config, or set {CREDENTIALS_ENV}."
        )
    key = Path(where).expanduser()
    if not key.is_file():
        raise HomevisitsError(
            f"The Google service-account key file {key} does not exist: check [source] credentials "
            f"(or {CREDENTIALS_ENV}) and the path of the downloaded JSON key."
        )
    try:
        info = json.loads(key.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise HomevisitsError(
            f"Could not read the Google service-account key file {key} ({exc.__class__.__name__}): "
            "check that the account running homevisits may read it."
        ) from exc
    except json.JSONDecodeError as exc:
        raise HomevisitsError(
            f"{key} is not a JSON key file: download the service account's key again as JSON."
        ) from exc
    if not isinstance(info, dict) or info.get("type") != "service_account":
        kind = info.get("type") if isinstance(info, dict) else None
        raise HomevisitsError(
            f"{key} is not a service-account key"
            + (f" (it is a '{kind}' file)" if kind else "")
            + ": create a service account in Google Cloud and download its JSON key."
        )
    try:
        credentials = service_account.Credentials.from_service_account_info(info, scopes=list(scopes))
    except (ValueError, KeyError) as exc:
        raise HomevisitsError(
            f"The service-account key {key} is damaged or incomplete ({exc.__class__.__name__}): "
            "download a new JSON key for the service account."
        ) from exc
    return ServiceAccount(credentials, info.get("client_email", ""), key)


# Every Google host the client stack may call: the Sheets and Drive APIs, and google-auth's token endpoint
# and its background "allowed locations" lookup. In loopback mode (tests) all of them go to the stand-in.
GOOGLE_HOSTS = (
    SHEETS_ROOT,
    DRIVE_ROOT,
    "https://oauth2.googleapis.com",
    "https://iamcredentials.googleapis.com",
)


class _LoopbackAdapter(HTTPAdapter):
    """Sends what the client addresses to Google to a stand-in on this machine instead."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target.rstrip("/")

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        url = request.url or ""
        for host in GOOGLE_HOSTS:
            if url.startswith(host + "/"):
                request.url = self.target + url[len(host) :]
        kwargs["proxies"] = {}
        return super().send(request, **kwargs)


def check_loopback(endpoint: str) -> str:
    """Only a server on this machine may stand in for Google (the bearer token goes with each request)."""
    host = urlsplit(endpoint).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if urlsplit(endpoint).scheme not in ("http", "https") or not loopback:
        raise HomevisitsError(
            f"{ENDPOINT_ENV} must be a loopback address such as http://127.0.0.1:8080, not {endpoint}."
        )
    return endpoint


def _route_to(session: requests.Session, target: str) -> requests.Session:
    adapter = _LoopbackAdapter(target)
    for host in GOOGLE_HOSTS:
        session.mount(host + "/", adapter)
    return session


def make_session(credentials: Any, endpoint: str | None = None) -> requests.Session:
    """An authorised session (the token refreshes itself).

    ``endpoint`` (or $HOMEVISITS_SHEETS_ENDPOINT), a loopback URL, sends every Google call of the
    client stack, signing in included, to a stand-in there: tests never leave the machine.
    """
    from google.auth.transport.requests import AuthorizedSession, Request

    endpoint = endpoint or os.environ.get(ENDPOINT_ENV)
    if not endpoint:
        return AuthorizedSession(credentials)
    target = check_loopback(endpoint)
    signing_in = _route_to(requests.Session(), target)
    return _route_to(AuthorizedSession(credentials, auth_request=Request(signing_in)), target)


# ---------------------------------------------------------------- what a failure means


class NotAGoogleSheet(HomevisitsError):
    """The Sheets API answered that the document is not a Google Sheet: an Excel file stored on Drive."""


@dataclass(frozen=True)
class Context:
    """What the tool was doing, for the sentence a person sees."""

    action: str  # "read", "write to", "set up"
    spreadsheet: str
    client_email: str
    key_path: Path | None = None
    worksheet: str | None = None


def explain(exc: BaseException, context: Context) -> HomevisitsError:
    """One sentence saying what to do about a failed request."""
    from google.auth import exceptions as auth_errors

    sheet = f"the Google Sheet {context.spreadsheet}"
    unwritten = " Nothing was written." if context.action != "read" else ""
    if isinstance(exc, auth_errors.RefreshError):
        return HomevisitsError(
            f"Google refused the service-account key {context.key_path or ''} ({_first_line(exc)}): "
            "the key may have been deleted; create a new JSON key for the service account."
        )
    if isinstance(exc, auth_errors.TransportError):
        return HomevisitsError(
            f"Could not reach Google to sign in ({_first_line(exc)}): check the internet connection."
        )
    after = tried(exc)
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return HomevisitsError(
            f"Could not reach Google Sheets{after} ({exc.__class__.__name__}): check the internet connection; "
            f"the next run will try again.{unwritten}"
        )
    if not isinstance(exc, APIError):
        return HomevisitsError(f"Could not {context.action} {sheet} ({_first_line(exc)}).{unwritten}")
    code, message = exc.code, str(exc.error.get("message", ""))
    if code == 403:
        if "has not been used" in message or "is disabled" in message or "SERVICE_DISABLED" in str(exc.error):
            return HomevisitsError(
                "The Google Sheets API is not enabled for the service account's project: enable it in Google "
                "Cloud (APIs & Services, Library, Google Sheets API) and run again."
            )
        return HomevisitsError(
            f"The service account {context.client_email} may not {context.action} {sheet}: share the sheet with "
            f"{context.client_email} as an Editor (Share button) and run again.{unwritten}"
        )
    if code == 404:
        return HomevisitsError(
            f"There is no Google Sheet with the key {context.spreadsheet}: check [source] spreadsheet in the "
            f"config (the sheet's full URL, or the long key between /d/ and /edit).{unwritten}"
        )
    if code == 400 and "not supported for this document" in message:
        return NotAGoogleSheet(
            f"{context.spreadsheet} is an Excel file stored on Google Drive, not a Google Sheet: set [source] "
            "drive_file to its URL or id instead of spreadsheet (see the README's Shared Drive steps)."
        )
    if code == 401:
        return HomevisitsError(
            "Google did not accept the service account's sign-in: create a new JSON key for the service account "
            "and point [source] credentials at it."
        )
    if code == 429:
        return HomevisitsError(
            f"Google Sheets is limiting how often the tool may call it (429 too many requests){after}: "
            f"the next run will try again.{unwritten}"
        )
    if code == 408 or code >= 500:
        words = STATUS_WORDS.get(code, "server error")
        return HomevisitsError(
            f"Google Sheets did not answer ({code} {words}){after}: the next run will try again.{unwritten}"
        )
    return HomevisitsError(
        f"Google Sheets refused to {context.action} {sheet} ({code}: {message[:200]}).{unwritten}"
    )


def tried(exc: BaseException) -> str:
    """`` after 7 tries over 95 seconds`` when the request was retried, else nothing."""
    tries = getattr(exc, "homevisits_tries", 1)
    waited = getattr(exc, "homevisits_waited", 0.0)
    return f" after {tries} tries over {waited:.0f} seconds" if tries > 1 else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:160]
