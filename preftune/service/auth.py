"""Tenants and API keys.

A key is ``pt-`` followed by 43 random URL-safe characters. It is shown once, when created;
the database keeps only its SHA-256 and its first 11 characters (to find the row). Checking a
key compares hashes in constant time. Every key belongs to one tenant, and every object the
API serves is scoped by that tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select

from preftune.errors import UsageError
from preftune.service.db import ApiKey, Database, Tenant, now
from preftune.service.queue import NotFound, new_id

KEY_PREFIX = "pt-"
_LOOKUP = len(KEY_PREFIX) + 8
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key and the tenant it belongs to (its name picks its quota)."""

    key_id: str
    tenant_id: str
    tenant_name: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def ensure_tenant(db: Database, name: str) -> str:
    """The id of the tenant called ``name``, created if it does not exist yet."""
    with db.session() as session:
        tenant = session.scalars(select(Tenant).where(Tenant.name == name)).first()
        if tenant is None:
            tenant = Tenant(id=new_id("org"), name=name, created_at=now())
            session.add(tenant)
        return tenant.id


def create_key(db: Database, name: str, tenant: str | None = None) -> tuple[ApiKey, str]:
    """A new key for ``tenant`` (default: a tenant named like the key); the secret is
    returned once and never stored."""
    if not name.strip():
        raise UsageError("a key needs a name", ["preftune keys create --name NAME"])
    tenant_id = ensure_tenant(db, tenant or name)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(id=new_id("key"), tenant_id=tenant_id, name=name, prefix=secret[:_LOOKUP],
                 key_hash=hash_key(secret), created_at=now())
    with db.session() as session:
        session.add(key)
    return key, secret


def authenticate(db: Database, secret: str) -> Principal | None:
    """The key's principal, or None for an unknown, wrong or revoked key."""
    with db.session() as session:
        found = session.execute(select(ApiKey, Tenant.name).join(Tenant)
                                .where(ApiKey.prefix == secret[:_LOOKUP])).first()
    key, tenant_name = found if found is not None else (None, "")
    good = hmac.compare_digest(key.key_hash if key else _DUMMY_HASH, hash_key(secret))
    if key is None or not good or key.revoked_at is not None:
        return None
    return Principal(key.id, key.tenant_id, tenant_name)


def list_keys(db: Database) -> list[tuple[ApiKey, str]]:
    """Every key with its tenant's name, oldest first."""
    with db.session() as session:
        rows = session.execute(select(ApiKey, Tenant.name).join(Tenant)
                               .order_by(ApiKey.created_at, ApiKey.id)).all()
        return [(key, name) for key, name in rows]


def revoke_key(db: Database, key_id: str) -> ApiKey:
    with db.session() as session:
        key = session.get(ApiKey, key_id)
        if key is None:
            raise NotFound(f"no key {key_id!r}", ["list them with: preftune keys list"])
        key.revoked_at = key.revoked_at or now()
        return key


class RateLimiter:
    """A token bucket per key (an API key, a client address): ``per_minute`` a minute, bursts
    up to that many.

    Kept in the server's memory: each server process limits on its own. Buckets that have
    refilled are forgotten once there are many, so a stream of new addresses cannot grow it
    without bound.
    """

    PRUNE_AT = 10_000

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()
        self.prune_at = self.PRUNE_AT

    def allow(self, key: str) -> float:
        """0 if the request may go ahead (it takes a token), else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        with self.lock:
            t = time.monotonic()
            tokens = self._tokens(key, t)
            if tokens >= 1.0:
                self._set(key, tokens - 1.0, t)
                return 0.0
            self._set(key, tokens, t)
            return (1.0 - tokens) / self.rate

    def wait(self, key: str) -> float:
        """The seconds until ``key`` has a token again (0: it has one); takes none."""
        if self.rate <= 0:
            return 0.0
        with self.lock:
            tokens = self._tokens(key, time.monotonic())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _tokens(self, key: str, t: float) -> float:
        tokens, last = self.buckets.get(key, (self.capacity, t))
        return min(self.capacity, tokens + (t - last) * self.rate)

    def _set(self, key: str, tokens: float, t: float) -> None:
        self.buckets[key] = (tokens, t)
        if len(self.buckets) >= self.prune_at:
            self.buckets = {k: v for k, v in self.buckets.items()
                            if v[0] + (t - v[1]) * self.rate < self.capacity}
            self.prune_at = max(self.PRUNE_AT, 2 * len(self.buckets))
