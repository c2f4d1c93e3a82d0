"""Supplier device profiles: how a supplier's device reports, and how it errs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

FIX_TYPES = ("3D", "SBAS", "DGPS", "RTK float", "RTK fixed", "RFID")


@dataclass(frozen=True)
class SupplierProfile:
    """Everything a simulated device of this supplier does, per firmware version."""

    technology: str = "GNSS"
    firmware: str = "1.0.0"
    format: str = "native"  # how it publishes: native, owntracks or nmea
    fix_rate_hz: float = 1.0
    fix_type: str = "RTK fixed"
    cep50_m: float = 0.3  # median horizontal error
    correlation_s: float = 10.0  # how long the error takes to wander (Gauss-Markov τ)
    reported_accuracy_factor: float = 1.0  # < 1: the device claims better than it is
    latency_ms: float = 250.0  # fix to publish, mean
    latency_jitter_ms: float = 80.0  # standard deviation
    clock_offset_ms: float = 0.0  # the device clock minus true time
    drop_rate: float = 0.0  # share of fixes never sent
    duplicate_rate: float = 0.0  # share sent twice
    reorder_rate: float = 0.0  # share sent after the next fix
    battery_drain_pct_per_h: float = 4.0  # from 100 % at the start of the shift
    # the device's own alarm (devices.sim.alarms): "on" to decide for itself and report it
    own_alarm: str = "off"
    own_alarm_delay_ms: float = 0.0  # from the fix to the device's alarm
    own_alarm_accuracy_factor: float = 2.0  # how it widens its reported accuracy to decide

    @property
    def is_rfid(self) -> bool:
        """An RFID tag: located only when a reader reads it, at that reader."""
        return self.technology.upper().startswith("RFID")

    @classmethod
    def from_mapping(cls, table: Mapping, where: str) -> SupplierProfile:
        from devices.sim.scenario import ScenarioError

        known = {f.name: f for f in fields(cls)}
        values = {}
        for key, value in table.items():
            if key not in known:
                raise ScenarioError(f"{where}.{key}", "unknown setting")
            if isinstance(known[key].default, str):
                if not isinstance(value, str):
                    raise ScenarioError(f"{where}.{key}", f"must be text, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ScenarioError(
                    f"{where}.{key}", f"must be a non-negative number, got {value!r}"
                )
            values[key] = value
        profile = cls(**values)
        if profile.own_alarm not in ("on", "off"):
            raise ScenarioError(f"{where}.own_alarm", "must be on or off")
        if profile.format not in ("native", "owntracks", "nmea"):
            raise ScenarioError(f"{where}.format", "must be native, owntracks or nmea")
        if profile.is_rfid:
            profile = replace(profile, fix_type="RFID")
        if profile.fix_type not in FIX_TYPES:
            raise ScenarioError(f"{where}.fix_type", f"must be one of {', '.join(FIX_TYPES)}")
        if not 0 < profile.fix_rate_hz <= 20:
            raise ScenarioError(f"{where}.fix_rate_hz", "must be above 0 and at most 20 Hz")
        for rate in ("drop_rate", "duplicate_rate", "reorder_rate"):
            if getattr(profile, rate) >= 1:
                raise ScenarioError(f"{where}.{rate}", "is a share of fixes, below 1")
        if profile.correlation_s <= 0:
            raise ScenarioError(f"{where}.correlation_s", "must be positive")
        return profile
