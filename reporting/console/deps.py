"""What every route depends on: the store, and who is asking."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from reporting.console.auth import Principal, Role, principal_of
from store import Store, StoreUnavailableError

bearer = HTTPBearer(auto_error=False, description="A token from `trackfence token create`.")


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        who = principal_of(request.app.state.store, credentials.credentials)
    except StoreUnavailableError:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the store is unreachable"
        ) from None
    if who is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "unknown token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return who


def allow(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that lets only these roles through (403 for the others)."""

    def check(who: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if who.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"the {who.role.value} role may not do this (needs {', '.join(roles)})",
            )
        return who

    return check


Reader = Annotated[Principal, Depends(get_principal)]
Editor = Annotated[Principal, Depends(allow(Role.OPERATOR, Role.ADMIN))]
Admin = Annotated[Principal, Depends(allow(Role.ADMIN))]
StoreDep = Annotated[Store, Depends(get_store)]
