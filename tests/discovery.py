"""Google's own description of an API (its discovery document), used to check what a stand-in receives.

``google-api-python-client`` ships the discovery documents of every Google API
(``googleapiclient/discovery_cache/documents/<api>.<version>.json``). :class:`Discovery` matches
a request's method and path to one of the API's methods, then checks every query parameter (known
to the method or to the API, enum values, repeated only when allowed, required ones present) and
every field of a JSON body against the method's request schema. :meth:`Discovery.check` returns
what is wrong, as sentences; an empty list means Google would recognise the request.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def documents_folder() -> Path:
    import googleapiclient

    return Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"


@dataclass(frozen=True)
class Method:
    id: str
    http_method: str
    pattern: re.Pattern[str]
    literal: int  # characters of the path template that are not parameters: the more, the more specific
    parameters: dict[str, Any]
    request: str | None  # the request body's schema name
    media_upload: bool


def _pattern(template: str) -> tuple[re.Pattern[str], int]:
    parts, literal, at = [], 0, 0
    for match in re.finditer(r"\{(\+?)([^}]+)\}", template):
        text = template[at : match.start()]
        parts.append(re.escape(text))
        literal += len(text)
        group = re.sub(r"\W", "_", match[2])
        parts.append(f"(?P<{group}>{'.+' if match[1] else '[^/]+'})")
        at = match.end()
    parts.append(re.escape(template[at:]))
    literal += len(template) - at
    return re.compile("".join(parts)), literal


class Discovery:
    """One API's discovery document (``Discovery.load("drive", "v3")``)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.doc = document
        self.schemas: dict[str, Any] = document.get("schemas", {})
        self.common: dict[str, Any] = document.get("parameters", {})
        base = "/" + (document.get("servicePath") or "").lstrip("/")
        self.methods: list[Method] = []
        for method in self._walk(document.get("resources", {})):
            request = (method.get("request") or {}).get("$ref")
            simple = ((method.get("mediaUpload") or {}).get("protocols") or {}).get("simple")
            paths = [(base + method.get("flatPath", method["path"]), False)]
            if simple:  # the media upload URL: /upload/<service path>...
                paths.append((simple["path"], True))
            for template, media in paths:
                pattern, literal = _pattern(template)
                self.methods.append(
                    Method(
                        method["id"],
                        method["httpMethod"],
                        pattern,
                        literal,
                        method["parameters"],
                        request,
                        media,
                    )
                )

    @classmethod
    @functools.cache
    def load(cls, api: str, version: str) -> Discovery:
        path = documents_folder() / f"{api}.{version}.json"
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def _walk(self, resources: dict[str, Any]) -> list[dict[str, Any]]:
        found = []
        for resource in resources.values():
            found += list(resource.get("methods", {}).values())
            found += self._walk(resource.get("resources", {}))
        return found

    def match(self, http_method: str, path: str) -> Method | None:
        """The most specific method whose path template matches ``path`` (already URL-decoded)."""
        candidates = [
            m for m in self.methods if m.http_method == http_method.upper() and m.pattern.fullmatch(path)
        ]
        return max(candidates, key=lambda m: m.literal, default=None)

    def check(self, http_method: str, path: str, query: dict[str, list[str]], body: Any = None) -> list[str]:
        """What Google would not recognise in this request ([] when it is a request the API describes)."""
        method = self.match(http_method, path)
        if method is None:
            return [f"{http_method} {path} is not a method of {self.doc.get('id')}"]
        problems = []
        for name, values in query.items():
            spec = method.parameters.get(name) or self.common.get(name)
            if spec is None or spec.get("location") != "query":
                problems.append(f"{method.id} has no query parameter '{name}'")
                continue
            if len(values) > 1 and not spec.get("repeated"):
                problems.append(f"{method.id}: '{name}' given {len(values)} times")
            for value in values:
                problems += _value_problems(f"{method.id} parameter '{name}'", spec, value)
        for name, spec in method.parameters.items():
            if spec.get("location") == "query" and spec.get("required") and name not in query:
                problems.append(f"{method.id} needs the query parameter '{name}'")
        if method.media_upload:
            if "uploadType" not in query:
                problems.append(f"{method.id}: an upload needs uploadType")
        elif body is not None:
            if method.request is None:
                problems.append(f"{method.id} takes no request body")
            else:
                problems += self._body_problems(body, {"$ref": method.request}, method.request)
        return problems

    def _body_problems(self, value: Any, spec: dict[str, Any], where: str) -> list[str]:
        if "$ref" in spec:
            spec = self.schemas[spec["$ref"]]
        kind = spec.get("type")
        if kind == "object" or "properties" in spec:
            if not isinstance(value, dict):
                return [f"{where} must be an object"]
            problems = []
            properties = spec.get("properties", {})
            extra = spec.get("additionalProperties")
            for name, item in value.items():
                if name in properties:
                    problems += self._body_problems(item, properties[name], f"{where}.{name}")
                elif extra is not None:
                    problems += self._body_problems(item, extra, f"{where}.{name}")
                else:
                    problems.append(f"{where} has no field '{name}'")
            return problems
        if kind == "array":
            if not isinstance(value, list):
                return [f"{where} must be a list"]
            return [
                p
                for i, item in enumerate(value)
                for p in self._body_problems(item, spec["items"], f"{where}[{i}]")
            ]
        if kind == "any" or value is None:
            return []
        if kind == "boolean" and not isinstance(value, bool):
            return [f"{where} must be true or false"]
        if kind == "string":
            if not isinstance(value, str):
                return [f"{where} must be text"]
            return _value_problems(where, spec, value)
        if kind in ("integer", "number") and (isinstance(value, bool) or not isinstance(value, int | float)):
            if kind == "integer" and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
                return []  # int64 travels as text
            return [f"{where} must be a number"]
        return []


def _value_problems(where: str, spec: dict[str, Any], value: str) -> list[str]:
    allowed = spec.get("enum")
    if allowed and value not in allowed:
        return [f"{where} is '{value}', not one of {', '.join(allowed)}"]
    if spec.get("type") == "boolean" and value not in ("true", "false", "True", "False"):
        return [f"{where} is '{value}', not true or false"]
    return []
