"""Bearer tokens with roles, kept only as SHA-256 digests.

Roles, each a superset of what the task force reads:
- viewer (the task force): read everything;
- operator: also create, change and retire sites and fences;
- supplier: read only its own devices, events and trial report;
- admin: everything, and issue tokens.

A token is 32 random bytes, so a plain SHA-256 is the right digest: there is
nothing to guess that a slow hash would protect.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

from store import ApiToken, Store


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    SUPPLIER = "supplier"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is asking: the token's name, role and (for a supplier) which supplier."""

    name: str
    role: Role
    supplier: str | None

    def sees_supplier(self, supplier: str) -> bool:
        return self.role != Role.SUPPLIER or supplier == self.supplier

    def sees_device(self, device_id: str) -> bool:
        return self.sees_supplier(device_id.split("/", 1)[0])


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(store: Store, name: str, role: Role | str, supplier: str | None = None) -> str:
    """Make a token, keep its digest, and return the token itself (shown once, never kept)."""
    role = Role(role)
    if (role == Role.SUPPLIER) != (supplier is not None):
        raise ValueError("a supplier token names its supplier, and only a supplier token does")
    if supplier is not None and ("/" in supplier or not supplier):
        raise ValueError(f"supplier {supplier!r} is not a supplier key")
    token = "tf_" + secrets.token_urlsafe(32)
    store.save_token(ApiToken(digest(token), name, role.value, supplier, time.time_ns() // 10**6))
    return token


def principal_of(store: Store, token: str) -> Principal | None:
    kept = store.token(digest(token))
    if kept is None:
        return None
    return Principal(kept.name, Role(kept.role), kept.supplier)
