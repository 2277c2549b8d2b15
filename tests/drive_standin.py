"""A loopback stand-in for the parts of the Google Drive API v3 that homevisits uses, beside Sheets v4.

``DriveStandIn`` is a :class:`sheets_standin.SheetsStandIn` (same server, same OAuth token endpoint,
same failure injection and request log) that also serves, as Google does for a file on a Shared
Drive: ``files.get`` (metadata with ``fields`` partial responses, and ``alt=media`` downloads),
the simple media upload ``PATCH /upload/drive/v3/files/{id}?uploadType=media`` (a new head revision,
same id and name), and ``revisions.update`` (``keepForever``). A Shared Drive file is found only
with ``supportsAllDrives=true`` (else 404, as Google answers); the drive scope is needed; a file not
shared with the service account is 404; ``canEdit=false`` or a read-only content restriction refuse
an upload with 403; a native Google Sheet cannot be downloaded, and the Sheets API refuses an Excel
file with Google's 400 "This operation is not supported for this document".

Every request, Sheets or Drive, is checked against Google's discovery document of its API.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from sheets_standin import ApiError, SheetsStandIn

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
GOOGLE_SHEET = "application/vnd.google-apps.spreadsheet"
DRIVE_SCOPE = "https://www.googleapis.com/auth/drive"


@dataclass
class Revision:
    id: str
    content: bytes
    modified: str
    keep_forever: bool = False

    @property
    def md5(self) -> str:
        return hashlib.md5(self.content).hexdigest()


@dataclass
class DriveFile:
    id: str
    name: str
    mime_type: str
    revisions: list[Revision] = field(default_factory=list)  # the head revision last
    members: set[str] | None = None  # who the Shared Drive is shared with; None: every service account
    can_edit: bool = True
    read_only: bool = False
    shared_drive: bool = True

    @property
    def head(self) -> Revision:
        return self.revisions[-1]

    def resource(self) -> dict[str, Any]:
        """The whole File resource as Drive v3 gives it (trimmed to ``fields`` by the caller)."""
        native = self.mime_type.startswith("application/vnd.google-apps.")
        out: dict[str, Any] = {
            "kind": "drive#file",
            "id": self.id,
            "name": self.name,
            "mimeType": self.mime_type,
            "modifiedTime": self.head.modified if self.revisions else "2026-11-01T08:00:00.000Z",
            "capabilities": {"canEdit": self.can_edit and not self.read_only, "canDownload": True},
        }
        if self.shared_drive:
            out["driveId"] = "0AHomeVisitsSharedDrive"
        if not native:
            out["md5Checksum"] = self.head.md5
            out["headRevisionId"] = self.head.id
            out["size"] = str(len(self.head.content))
        if self.read_only:
            out["contentRestrictions"] = [
                {"readOnly": True, "reason": "Final version", "type": "globalContentRestriction"}
            ]
        return out


def parse_fields(text: str) -> dict[str, Any]:
    """Drive's partial-response syntax: ``id,name,capabilities(canEdit)`` -> {"id": {}, ..., {"canEdit": {}}}."""
    out: dict[str, Any] = {}
    at = 0
    while at < len(text):
        match = re.compile(r"\s*([A-Za-z_*][\w*]*)").match(text, at)
        if not match:
            raise ApiError(400, f"Invalid field selection {text}")
        name, at = match[1], match.end()
        inner: dict[str, Any] = {}
        if text[at : at + 1] == "(":
            depth, start = 1, at + 1
            while depth:
                at += 1
                if at >= len(text):
                    raise ApiError(400, f"Invalid field selection {text}")
                depth += {"(": 1, ")": -1}.get(text[at], 0)
            inner = parse_fields(text[start:at])
            at += 1
        out[name] = inner
        if text[at : at + 1] == ",":
            at += 1
    return out


def select(resource: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    if "*" in fields:
        return resource
    out = {}
    for name, inner in fields.items():
        if name in resource:
            value = resource[name]
            out[name] = select(value, inner) if inner and isinstance(value, dict) else value
    return out


class DriveStandIn(SheetsStandIn):
    """``with DriveStandIn() as api:`` Drive v3 and Sheets v4 on ``api.url``; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, DriveFile] = {}
        self.drive_api_enabled = True
        self._revisions = 0

    # ------------------------------------------------------------ set-up helpers for tests

    def _revision(self, content: bytes) -> Revision:
        self._revisions += 1
        moment = dt.datetime(2026, 11, 23, 8, 0) + dt.timedelta(minutes=self._revisions)
        return Revision(f"0BrevHomeVisits{self._revisions:04d}", bytes(content), moment.isoformat() + ".000Z")

    def add_file(
        self,
        file_id: str,
        content: bytes = b"",
        *,
        name: str = "Home Visits Excel Sheet.xlsx",
        mime_type: str = XLSX,
        members: set[str] | None = None,
        can_edit: bool = True,
        read_only: bool = False,
    ) -> DriveFile:
        """A file on the Shared Drive; a native Google Sheet also needs ``add_book`` with the same id."""
        with self._lock:
            native = mime_type.startswith("application/vnd.google-apps.")
            file = DriveFile(
                file_id,
                name,
                mime_type,
                [] if native else [self._revision(content)],
                members=members,
                can_edit=can_edit,
                read_only=read_only,
            )
            self.files[file_id] = file
            return file

    def save_as_someone_else(self, file_id: str, content: bytes) -> Revision:
        """A member of staff saves the workbook (Excel for the web, the Drive app): a new head revision."""
        with self._lock:
            revision = self._revision(content)
            self.files[file_id].revisions.append(revision)
            return revision

    def content(self, file_id: str) -> bytes:
        return self.files[file_id].head.content

    def drive_counts(self) -> dict[str, int]:
        return {kind: n for kind, n in self.counts.items() if kind.startswith(("files.", "revisions."))}

    # ------------------------------------------------------------ dispatch

    def discovery_problems(
        self, method: str, path: str, query: dict[str, list[str]], payload: Any
    ) -> list[str]:
        from discovery import Discovery

        if path.startswith(("/drive/v3/", "/upload/drive/v3/")):
            return Discovery.load("drive", "v3").check(method, path, query, payload)
        return super().discovery_problems(method, path, query, payload)

    def _route(self, method: str, path: str, query: dict[str, list[str]] | None = None) -> tuple[str, Any]:
        routes = [
            ("GET", r"/drive/v3/files/([^/]+)", "files.get", self._get),
            ("PATCH", r"/upload/drive/v3/files/([^/]+)", "files.upload", self._upload),
            (
                "PATCH",
                r"/drive/v3/files/([^/]+)/revisions/([^/]+)",
                "revisions.update",
                self._revision_update,
            ),
        ]
        for verb, pattern, kind, handler in routes:
            found = re.fullmatch(pattern, path)
            if verb == method and found:
                file_id, *args = [unquote(g) for g in found.groups()]
                if kind == "files.get" and (query or {}).get("alt") == ["media"]:
                    kind = "files.download"  # counted and failed as its own kind
                return kind, functools.partial(self._with_file, handler, file_id, args)
        return super()._route(method, path, query)

    def _with_file(
        self, handler: Any, file_id: str, args: list[str], email: str, query: Any, payload: Any
    ) -> Any:
        if not self.drive_api_enabled:
            raise ApiError(
                403,
                "Google Drive API has not been used in project 100000000001 before or it is disabled. Enable it "
                "by visiting https://console.developers.google.com/apis/api/drive.googleapis.com/overview"
                "?project=100000000001 then retry. (SERVICE_DISABLED)",
            )
        email, scopes = self._token_of(email)
        if DRIVE_SCOPE not in scopes:
            raise ApiError(403, "Request had insufficient authentication scopes.")
        file = self.files.get(file_id)
        visible = file is not None and (file.members is None or email in file.members)
        # files.* on a Shared Drive need supportsAllDrives=true (revisions.* take no such parameter)
        all_drives = handler == self._revision_update or query.get("supportsAllDrives") == ["true"]
        if not visible or (file.shared_drive and not all_drives):
            raise ApiError(404, f"File not found: {file_id}.")
        return handler(file, *args, query=query, payload=payload)

    def _token_of(self, email: str) -> tuple[str, list[str]]:
        scopes = [s for e, s in self._tokens.values() if e == email]
        return email, scopes[-1] if scopes else []

    def _with_book(
        self, handler: Any, key: str, args: list[str], email: str, query: Any, payload: Any
    ) -> Any:
        file = self.files.get(key)
        if file is not None and file.mime_type != GOOGLE_SHEET:
            raise ApiError(400, "This operation is not supported for this document")
        return super()._with_book(handler, key, args, email, query, payload)

    # ------------------------------------------------------------ Drive v3

    def _get(self, file: DriveFile, query: Any, payload: Any) -> Any:
        if query.get("alt") == ["media"]:
            if not file.revisions:
                raise ApiError(
                    403,
                    "Only files with binary content can be downloaded. Use Export with Docs Editors files.",
                )
            return file.head.content
        fields = parse_fields(query.get("fields", ["id,name,mimeType,kind"])[0])
        return select(file.resource(), fields)

    def _upload(self, file: DriveFile, query: Any, payload: Any) -> Any:
        if query.get("uploadType") != ["media"]:
            raise ApiError(400, "the stand-in serves uploadType=media only")
        if file.read_only:
            raise ApiError(403, "The file is locked (content restriction) and cannot be modified.")
        if not file.can_edit:
            raise ApiError(403, "The user does not have sufficient permissions for this file.")
        if not file.revisions:
            raise ApiError(400, "A Google Docs Editors file cannot be replaced by a media upload.")
        content = payload if isinstance(payload, bytes) else b""
        file.revisions.append(self._revision(content))
        fields = parse_fields(query.get("fields", ["id,name,mimeType,kind"])[0])
        return select(file.resource(), fields)

    def _revision_update(self, file: DriveFile, revision_id: str, query: Any, payload: Any) -> Any:
        revision = next((r for r in file.revisions if r.id == revision_id), None)
        if revision is None:
            raise ApiError(404, f"Revision not found: {revision_id}.")
        if not file.can_edit or file.read_only:
            raise ApiError(403, "The user does not have sufficient permissions for this file.")
        if "keepForever" in (payload or {}):
            revision.keep_forever = bool(payload["keepForever"])
        return {
            "kind": "drive#revision",
            "id": revision.id,
            "mimeType": file.mime_type,
            "modifiedTime": revision.modified,
            "keepForever": revision.keep_forever,
            "md5Checksum": revision.md5,
        }
