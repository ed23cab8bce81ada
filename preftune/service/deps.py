"""What the routes depend on: the service (database, store, limits) and the calling key.

Every /v1 route takes ``CurrentPrincipal``: the key from ``Authorization: Bearer <key>``,
checked against the database and rate-limited per key. Routes scope every query by the
principal's tenant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from preftune.service.auth import Principal, RateLimiter, authenticate
from preftune.service.db import Database
from preftune.service.store import Store

KEY_HINT = "an administrator creates keys on the server with: preftune keys create --name NAME"


@dataclass(frozen=True)
class Service:
    """What ``create_app`` was given, shared by every request."""

    db: Database
    store: Store
    limiter: RateLimiter
    rate_limit_per_minute: int
    max_upload_bytes: int


class ApiError(Exception):
    """An error about the HTTP request itself (no key, too many requests): answered with
    ``status`` and an OpenAI-shaped body by the app's error handlers."""

    def __init__(self, status: int, message: str, *, type: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type, code
        self.headers = headers or {}


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]

# Declares the bearer scheme in the OpenAPI document; the checks are get_principal's own, so
# that a missing key gets the same OpenAI-shaped 401 as a wrong one.
bearer = HTTPBearer(auto_error=False, description="An API key (pt-...). " + KEY_HINT)


def get_principal(
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller, from its API key; 401 without a valid key, 429 over the rate limit."""
    if credentials is None:
        raise ApiError(401, "no API key: send the header 'Authorization: Bearer <key>'\n"
                       f"hint: {KEY_HINT}", type="authentication_error", code="missing_api_key")
    principal = authenticate(service.db, credentials.credentials)
    if principal is None:
        raise ApiError(401, "the API key is not valid: unknown, mistyped or revoked\n"
                       f"hint: {KEY_HINT}", type="authentication_error", code="invalid_api_key")
    wait = service.limiter.allow(principal.key_id)
    if wait > 0:
        seconds = math.ceil(wait)
        raise ApiError(429, f"this API key made more than {service.rate_limit_per_minute} "
                       f"requests in a minute\nhint: retry in {seconds} s",
                       type="rate_limit_error", code="rate_limit_exceeded",
                       headers={"Retry-After": str(seconds)})
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
