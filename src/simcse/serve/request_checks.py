"""Reading and checking request bodies, and the OpenAI error shape every refusal is answered with
(``{"error": {"message", "type", "code"}}``): limits are enforced before any work (size while streaming,
text count, text length)."""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import Request
from starlette.responses import JSONResponse

from simcse.serve.settings import ServeSettings

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    500: "server_error",
    503: "overloaded_error",
    504: "timeout_error",
}


class ApiError(Exception):
    """A request the service refuses: answered as ``status`` with the OpenAI error body."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def error_response(
    status: int, message: str, code: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The OpenAI-style error response: ``{"error": {"message", "type", "code"}}`` with HTTP ``status``."""
    body = {
        "error": {"message": message, "type": ERROR_TYPES.get(status, "invalid_request_error"), "code": code}
    }
    return JSONResponse(body, status_code=status, headers=headers)


def json_type(value: Any) -> str:
    """How an error message names the JSON type of ``value`` ("a string", "a list", "null"...)."""
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check_api_key(request: Request, key: str | None) -> None:
    """``Authorization: Bearer KEY`` or ``X-API-Key: KEY``, compared in constant time."""
    if key is None:
        return
    supplied = None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        supplied = token.strip()
    elif request.headers.get("x-api-key"):
        supplied = request.headers["x-api-key"]
    challenge = {"WWW-Authenticate": "Bearer"}
    if supplied is None:
        raise ApiError(
            401,
            "missing API key: send Authorization: Bearer KEY or X-API-Key: KEY",
            "missing_api_key",
            challenge,
        )
    # headers arrive as latin-1 text; compare the raw bytes with the key's UTF-8 bytes
    if not hmac.compare_digest(supplied.encode("latin-1", "replace"), key.encode("utf-8")):
        raise ApiError(401, "invalid API key", "invalid_api_key", challenge)


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object; 415/413/422 otherwise. Size is checked on Content-Length and while
    streaming (a chunked or lying client cannot send more than ``max_bytes``)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "Content-Type must be application/json", "unsupported_media_type")
    too_large = {"Connection": "close"}
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(
            413,
            f"the request body is {int(declared)} bytes; the limit is {max_bytes} (--max-body-bytes)",
            "body_too_large",
            too_large,
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(
                413,
                f"the request body exceeds {max_bytes} bytes (--max-body-bytes)",
                "body_too_large",
                too_large,
            )
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise ApiError(422, "the request body is empty: send a JSON object", "invalid_json")
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise ApiError(422, "the request body is nested too deeply", "invalid_json") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, too many integer digits
        raise ApiError(422, f"the request body is not valid JSON: {e}", "invalid_json") from None
    if not isinstance(value, dict):
        raise ApiError(422, f"the request body must be a JSON object, got {json_type(value)}", "invalid_type")
    return value


def check_fields(body: dict[str, Any], allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
    """A 422 ApiError for the first field of ``body`` not in ``allowed``, or the first of ``required``
    missing."""
    unknown = [k for k in body if k not in allowed]
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0]!r}; expected {', '.join(allowed)}", "unknown_field")
    for name in required:
        if name not in body:
            raise ApiError(422, f"missing field {name!r}", "missing_field")


def check_count(count: int, what: str, settings: ServeSettings) -> None:
    """``what`` ("'input' has") names the texts counted against --max-batch."""
    if count > settings.max_batch:
        raise ApiError(
            413,
            f"{what} {count} texts; the limit is {settings.max_batch} per request (--max-batch)",
            "too_many_inputs",
        )


def check_unicode(text: str, where: str) -> None:
    """A 422 ApiError when ``text`` is not valid UTF-8 (a lone surrogate); ``where`` names the field."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, f"{where!r} is not valid Unicode (a lone surrogate)", "invalid_text") from None


def texts_field(body: dict[str, Any], name: str, settings: ServeSettings) -> tuple[list[str], bool]:
    """(texts, single) for a field holding a string or a non-empty list of strings, within the limits."""
    if name not in body:
        raise ApiError(422, f"missing field {name!r}", "missing_field")
    value = body[name]
    single = isinstance(value, str)
    if single:
        texts = [value]
    elif isinstance(value, list):
        if not value:
            raise ApiError(422, f"{name!r} is an empty list: send at least one text", "empty_input")
        check_count(len(value), f"{name!r} has", settings)
        for i, item in enumerate(value):
            if isinstance(item, str):
                continue
            if (isinstance(item, int) and not isinstance(item, bool)) or (
                isinstance(item, list) and item and all(isinstance(x, int) for x in item)
            ):
                raise ApiError(
                    422, f"'{name}[{i}]': token-id inputs are not supported; send text", "invalid_type"
                )
            raise ApiError(422, f"'{name}[{i}]' must be a string, got {json_type(item)}", "invalid_type")
        texts = value
    else:
        raise ApiError(
            422, f"{name!r} must be a string or a list of strings, got {json_type(value)}", "invalid_type"
        )
    for i, text in enumerate(texts):
        where = name if single else f"{name}[{i}]"
        if not text:
            raise ApiError(422, f"{where!r} is an empty string", "empty_input")
        if len(text) > settings.max_text_chars:
            raise ApiError(
                413,
                f"{where!r} has {len(text)} characters; the limit is {settings.max_text_chars} (--max-text-chars)",
                "text_too_long",
            )
        check_unicode(text, where)
    return texts, single


def optional_string(body: dict[str, Any], name: str) -> str | None:
    """``body[name]`` when it is a valid string, None when absent or null; anything else is a 422 ApiError."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(422, f"{name!r} must be a string, got {json_type(value)}", "invalid_type")
    check_unicode(value, name)
    return value
