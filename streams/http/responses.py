"""What every route shares: JSON answers, `{error: {code, message, field?}}` for every error, the
bearer-token check, and the query parameters `?wait=` and `?min_version=` read with their limits."""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web as aioweb

from ..contract.jsonio import InputError, dumps
from .limits import MAX_WAIT

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.headers = status, code, message, field, headers


def json_response(body, status: int = 200, headers: dict | None = None) -> aioweb.Response:
    return aioweb.Response(body=dumps(body), status=status, content_type="application/json", headers=headers)


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict | None = None) -> aioweb.Response:
    error = {"code": code, "message": message}
    if field:
        error["field"] = field
    return json_response({"error": error}, status, headers)


_STATUS_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "BODY_TOO_LARGE", 400: "BAD_REQUEST"}


@aioweb.middleware
async def json_errors(request, handler):
    """Every error is `{error: {code, message, field?}}`; never a stack trace."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)
    except InputError as exc:
        return error_response(400, exc.code, exc.message, exc.field)
    except aioweb.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None  # 405 must say what is allowed
        return error_response(exc.status, _STATUS_CODES.get(exc.status, f"HTTP_{exc.status}"), exc.reason,
                              headers=allow)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return error_response(500, "INTERNAL", "internal error; the worker log has the details")


def make_auth_check(token: str | None):
    @aioweb.middleware
    async def require_token(request, handler):
        """Write routes need `Authorization: Bearer <BANK_API_TOKEN>` when a token is configured."""
        if token and request.method in ("POST", "PUT", "PATCH", "DELETE"):
            if request.headers.get("Authorization", "") != f"Bearer {token}":
                return error_response(401, "UNAUTHORIZED", "a valid bearer token is required",
                                      headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)
    return require_token


def query_float(request, name: str, default: float = 0.0, upper: float = MAX_WAIT) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"{name} must be a number of seconds", name) from None
    if not 0 <= value <= upper:
        raise InputError(f"{name} must be between 0 and {upper:g}", name)
    return value


def query_int(request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"{name} must be an integer", name) from None
    if value < 0:
        raise InputError(f"{name} must not be negative", name)
    return value
