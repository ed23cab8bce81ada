"""What the routes depend on: the service (database, store, limits) and the calling key.

Every /v1 route takes ``CurrentPrincipal``: the key from ``Authorization: Bearer <key>``,
checked against the database and rate-limited per key. Routes scope every query by the
principal's tenant. Failed key checks are limited per client address, so keys cannot be
guessed at speed: past ``failed_auth_per_minute`` failures, that address gets 429 for every
key, good or bad, until its bucket refills.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from preftune.service.auth import Principal, RateLimiter, authenticate
from preftune.service.db import Database
from preftune.service.limits import ServiceConfig
from preftune.service.store import Store

KEY_HINT = "an administrator creates keys on the server with: preftune keys create --name NAME"


@dataclass(frozen=True)
class Service:
    """What ``create_app`` was given, shared by every request."""

    db: Database
    store: Store
    limiter: RateLimiter  # requests per key
    rate_limit_per_minute: int
    max_upload_bytes: int
    config: ServiceConfig
    failed_auth: RateLimiter  # failed key checks per client address


class ApiError(Exception):
    """An error about the HTTP request itself (no key, too many requests): answered with
    ``status`` and an OpenAI-shaped body by the app's error handlers."""

    def __init__(self, status: int, message: str, *, type: str, code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type, code
        self.param = param
        self.headers = headers or {}


def quota_exceeded(message: str, quota: str, hint: str, param: str | None = None) -> ApiError:
    """429 for a tenant over its quota: waiting for the rate limit to refill does not help,
    so clients (the OpenAI SDK too) are told not to retry."""
    return ApiError(429, f"{message}\nhint: {hint}\nhint: the operator sets it in the service "
                    f"config: quota.{quota} (or tenants.<name>.{quota})",
                    type="insufficient_quota", code="quota_exceeded", param=param,
                    headers={"x-should-retry": "false"})


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]

# Declares the bearer scheme in the OpenAPI document; the checks are get_principal's own, so
# that a missing key gets the same OpenAI-shaped 401 as a wrong one.
bearer = HTTPBearer(auto_error=False, description="An API key (pt-...). " + KEY_HINT)


def get_principal(
    request: Request, service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller, from its API key; 401 without a valid key, 429 over the rate limit or
    after too many failed key checks from the caller's address."""
    check_address(request, service)
    if credentials is None:
        raise ApiError(401, "no API key: send the header 'Authorization: Bearer <key>'\n"
                       f"hint: {KEY_HINT}", type="authentication_error", code="missing_api_key")
    principal = authenticate(service.db, credentials.credentials)
    if principal is None:
        failed_check(request, service)
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


def client_address(request: Request) -> str:
    """The caller's address (behind a reverse proxy on this host, uvicorn takes it from
    X-Forwarded-For: see its --forwarded-allow-ips)."""
    return request.client.host if request.client else "unknown"


def check_address(request: Request, service: Service) -> None:
    """429 while the caller's address is over its failed key checks."""
    wait = service.failed_auth.wait(client_address(request))
    if wait > 0:
        seconds = math.ceil(wait)
        raise ApiError(429, f"more than {service.config.failed_auth_per_minute} failed key "
                       f"checks in a minute from {client_address(request)}: no key is checked "
                       f"from there for now\nhint: retry in {seconds} s with a valid key",
                       type="rate_limit_error", code="too_many_failed_keys",
                       headers={"Retry-After": str(seconds)})


def failed_check(request: Request, service: Service) -> None:
    """Count a wrong key (or metrics token) against the caller's address."""
    service.failed_auth.allow(client_address(request))


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
