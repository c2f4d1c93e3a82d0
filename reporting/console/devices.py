"""Devices: supplier, firmware, last position, state and time since the last fix."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status

from geofence.vocabulary import State
from reporting.console.auth import Principal, Role
from reporting.console.deps import Reader, StoreDep
from reporting.console.models import DeviceOut
from store import Store

router = APIRouter(tags=["devices"])


@router.get("/devices", response_model=list[DeviceOut], summary="Every device and its state")
def devices(
    request: Request,
    store: StoreDep,
    who: Reader,
    supplier: Annotated[
        str | None, Query(max_length=100, description="Only this supplier's devices.")
    ] = None,
) -> list[DeviceOut]:
    return overview(request, store, who, supplier)


def overview(
    request: Request, store: Store, who: Principal, supplier: str | None
) -> list[DeviceOut]:
    """Devices as this principal may see them (a supplier: only its own)."""
    if who.role == Role.SUPPLIER:
        if supplier is not None and supplier != who.supplier:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "a supplier reads only its own devices")
        supplier = who.supplier
    lost_after_s = request.app.state.lost_after_s
    now_ms = time.time_ns() // 1_000_000
    out = []
    for d in store.device_overview(supplier):
        silent_s = max(0.0, (now_ms - d.received_ms) / 1000)
        out.append(
            DeviceOut(
                device_id=d.device_id,
                supplier=d.supplier,
                firmware=d.firmware,
                # a device that has gone quiet is itself an alarm: lost protection
                state=State.LOST if silent_s > lost_after_s else d.state,
                last_fix_ms=d.fix_ms,
                seconds_since_fix=round(silent_s, 1),
                lat=d.lat,
                lon=d.lon,
                accuracy_m=d.accuracy_m,
                site=d.site,
            )
        )
    return out
