"""Scenario files: a site, its workers and what they do, and the suppliers' devices.

    [scenario]
    name = "Adjacent open line"
    site = "../sites/ecm1-kings-cross.toml"   # relative to this file
    line = "Down Fast (blocked)"              # along/lateral are measured on this line
    duration_s = 1800
    night = false                             # people walk slower at night
    seed = 7

    [[worker]]
    name = "lookout"
    device = "acme/ac-0101"                   # supplier/device they wear
    along_m = 430                             # where they start on the line...
    lateral_m = -3.0                          # ...and how far to its left (negative: right)
    steps = [
      { do = "walk", distance_m = 120, speed_mps = 1.4 },   # along the line (negative: back)
      { do = "stand", seconds = 300 },                      # working in one place
      { do = "drift", to_lateral_m = 2.4, seconds = 20 },   # absorbed, drifting sideways
      { do = "move", to_lateral_m = -3.5, speed_mps = 1.2 },# stepping back / crossing
    ]

    [supplier.acme]                           # see devices.sim.profiles.SupplierProfile
    fix_rate_hz = 1
    cep50_m = 0.3

Every error names the table, the worker and the field, so a trial manager can fix
the file without reading code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from devices.sim.profiles import SupplierProfile

#: Faster than this is not a person walking on ballast (a brisk walk is ~1.8 m/s).
MAX_WALKING_SPEED_MPS = 3.0
#: People move more slowly at night (torchlight, uneven ballast).
NIGHT_SPEED_FACTOR = 0.8


class ScenarioError(ValueError):
    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Step:
    do: str  # walk, stand, drift, move
    distance_m: float = 0.0  # walk
    speed_mps: float = 1.4  # walk, move
    seconds: float = 0.0  # stand, drift
    to_lateral_m: float = 0.0  # drift, move


@dataclass(frozen=True)
class Worker:
    name: str
    device: str  # supplier/device
    along_m: float
    lateral_m: float
    steps: tuple[Step, ...]
    firmware: str | None = None  # a firmware version of the supplier's (default: the profile's)
    #: the person wearing the device: devices worn by one person share one true path
    #: (a trial straps every supplier's device to the same worker); default: the name
    wearer: str | None = None

    @property
    def person(self) -> str:
        return self.wearer or self.name

    @property
    def supplier(self) -> str:
        return self.device.split("/", 1)[0]

    @property
    def profile_key(self) -> tuple[str, str | None]:
        return self.supplier, self.firmware


#: What a structure does to GNSS: error ×, multipath bias (m), fix type it degrades to,
#: and whether there is no fix at all.
STRUCTURE_EFFECTS = {
    "overbridge": (4.0, 1.0, "RTK float", False),
    "tunnel": (1.0, 0.0, None, True),
    "cutting": (2.0, 0.3, "RTK float", False),
    "platform": (2.5, 0.6, "DGPS", False),
}
#: After a tunnel, a receiver takes this long to recover its accuracy.
REACQUIRE_S = 20.0


@dataclass(frozen=True)
class Structure:
    """A span of the scenario's line under or beside a structure."""

    kind: str  # overbridge, tunnel, cutting, platform
    from_along_m: float
    to_along_m: float


@dataclass(frozen=True)
class RfidReaderSpec:
    """An RFID reader on the site, positioned like a worker: along the line and to its left."""

    reader_id: str
    along_m: float
    lateral_m: float
    range_m: float
    miss_rate: float  # share of reads missed while a tag is in range


@dataclass(frozen=True)
class Scenario:
    name: str
    site_file: Path
    line: str | None
    duration_s: float
    night: bool
    seed: int
    workers: tuple[Worker, ...]
    suppliers: dict[str, SupplierProfile] = field(default_factory=dict)
    structures: tuple[Structure, ...] = ()
    #: (supplier, firmware) -> the profile of that firmware version, where it differs
    firmware_profiles: dict[tuple[str, str], SupplierProfile] = field(default_factory=dict)
    rfid_readers: tuple[RfidReaderSpec, ...] = ()

    def profile(self, worker: Worker) -> SupplierProfile:
        """The profile of the device a worker wears (its firmware version's, if given)."""
        if worker.firmware is not None:
            return self.firmware_profiles[(worker.supplier, worker.firmware)]
        return self.suppliers[worker.supplier]


def load_scenario(path: str | Path) -> Scenario:
    from loading.tomlfile import TomlFileError, read_toml

    path = Path(path)
    try:
        data = read_toml(path)
    except TomlFileError as exc:
        raise ScenarioError(str(path), str(exc)) from None
    return scenario_from_mapping(data, base=path.parent)


def _number(
    table: Mapping,
    key: str,
    where: str,
    *,
    default: float | None = None,
    minimum: float | None = None,
) -> float:
    value = table.get(key, default)
    if value is None:
        raise ScenarioError(f"{where}.{key}", "is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{where}.{key}", f"must be a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ScenarioError(f"{where}.{key}", f"must be at least {minimum}, got {value}")
    return float(value)


def scenario_from_mapping(data: Mapping, base: Path = Path(".")) -> Scenario:
    """A scenario from its parsed TOML; ScenarioError names the table and field at fault."""
    head = data.get("scenario")
    if not isinstance(head, Mapping):
        raise ScenarioError("[scenario]", "a scenario file needs a [scenario] table")
    name = head.get("name")
    if not isinstance(name, str) or not name:
        raise ScenarioError("[scenario].name", "a scenario needs a name")
    site = head.get("site")
    if not isinstance(site, str):
        raise ScenarioError("[scenario].site", "the site file (TOML or GeoJSON) is required")
    night = head.get("night", False)
    if not isinstance(night, bool):
        raise ScenarioError("[scenario].night", f"must be true or false, got {night!r}")
    seed = head.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ScenarioError("[scenario].seed", f"must be a whole number, got {seed!r}")
    duration = _number(head, "duration_s", "[scenario]", minimum=1)
    suppliers, firmware_profiles = _suppliers(data.get("supplier") or {})
    workers = _workers(data.get("worker") or [], night, suppliers, firmware_profiles)
    return Scenario(
        name,
        (base / site).resolve(),
        head.get("line"),
        duration,
        night,
        seed,
        tuple(workers),
        suppliers,
        tuple(_structures(data.get("structure") or [])),
        firmware_profiles,
        tuple(_readers(data.get("rfid_reader") or [])),
    )


def _suppliers(tables: Mapping) -> tuple[dict, dict]:
    """Each supplier's device profile, and one per firmware version that behaves differently."""
    suppliers, firmware_profiles = {}, {}
    for supplier, table in tables.items():
        where = f"[supplier.{supplier}]"
        versions = dict(table.get("firmware_versions") or {})
        common = {k: v for k, v in table.items() if k != "firmware_versions"}
        suppliers[supplier] = SupplierProfile.from_mapping(common, where)
        for version, changes in versions.items():
            # a firmware version behaving differently (NRA24-05): the base profile, changed
            firmware_profiles[(supplier, version)] = SupplierProfile.from_mapping(
                {**common, **dict(changes), "firmware": version},
                f"{where}.firmware_versions.{version}",
            )
    return suppliers, firmware_profiles


def _workers(items: list, night: bool, suppliers: Mapping, firmware_profiles: Mapping) -> list:
    """The workers, each wearing their own device, on firmware their supplier knows."""
    workers = [_worker(w, f"worker[{i}]", night, suppliers) for i, w in enumerate(items)]
    if not workers:
        raise ScenarioError("[[worker]]", "a scenario needs at least one worker")
    names = [w.name for w in workers]
    if len(set(names)) != len(names):
        raise ScenarioError("[[worker]]", "worker names must be unique")
    devices = [w.device for w in workers]
    if len(set(devices)) != len(devices):
        raise ScenarioError("[[worker]]", "each worker wears their own device")
    for w in workers:
        if w.firmware is not None and (w.supplier, w.firmware) not in firmware_profiles:
            raise ScenarioError(
                f"worker {w.name!r}.firmware",
                f"{w.supplier} has no firmware version {w.firmware!r} in its profile",
            )
    return workers


def _structures(items: list) -> list[Structure]:
    """Overbridges, tunnels and cuttings along the line, each a stretch of along-track metres."""
    structures = []
    for i, item in enumerate(items):
        where = f"structure[{i}]"
        kind = item.get("kind")
        if kind not in STRUCTURE_EFFECTS:
            raise ScenarioError(
                f"{where}.kind", f"unknown structure {kind!r} ({', '.join(STRUCTURE_EFFECTS)})"
            )
        lo = _number(item, "from_along_m", where, minimum=0)
        hi = _number(item, "to_along_m", where, minimum=0)
        if hi <= lo:
            raise ScenarioError(f"{where}.to_along_m", "must be beyond from_along_m")
        structures.append(Structure(kind, lo, hi))
    return structures


def _readers(items: list) -> list[RfidReaderSpec]:
    """The scenario's RFID readers: where each stands, its range and how often it misses."""
    readers = []
    for i, item in enumerate(items):
        where = f"rfid_reader[{i}]"
        reader_id = item.get("id")
        if not isinstance(reader_id, str) or not reader_id:
            raise ScenarioError(f"{where}.id", "every reader needs an id")
        miss = _number(item, "miss_rate", where, default=0.0, minimum=0)
        if miss >= 1:
            raise ScenarioError(f"{where}.miss_rate", "is a share of reads, below 1")
        readers.append(
            RfidReaderSpec(
                reader_id,
                _number(item, "along_m", where, minimum=0),
                _number(item, "lateral_m", where),
                _number(item, "range_m", where, minimum=0.1),
                miss,
            )
        )
    return readers


def _worker(w: Mapping, where: str, night: bool, suppliers: Mapping) -> Worker:
    name = w.get("name")
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"{where}.name", "every worker needs a name")
    where = f"worker {name!r}"
    device = w.get("device")
    if not isinstance(device, str) or device.count("/") != 1:
        raise ScenarioError(f"{where}.device", "give the device as supplier/device")
    if device.split("/")[0] not in suppliers:
        raise ScenarioError(
            f"{where}.device", f"unknown supplier {device.split('/')[0]!r} (no [supplier] profile)"
        )
    steps = []
    for k, s in enumerate(w.get("steps") or []):
        steps.append(_step(s, f"{where}.steps[{k}]", night))
    firmware = w.get("firmware")
    if firmware is not None and not isinstance(firmware, str):
        raise ScenarioError(f"{where}.firmware", 'must be text, e.g. "2.5.0"')
    return Worker(
        name,
        device,
        _number(w, "along_m", where, minimum=0),
        _number(w, "lateral_m", where),
        tuple(steps),
        firmware,
    )


_STEP_FIELDS = {f.name for f in fields(Step)}


def _step(s: Mapping, where: str, night: bool) -> Step:
    if not isinstance(s, Mapping):
        raise ScenarioError(where, "each step is a table such as { do = 'walk', … }")
    unknown = set(s) - _STEP_FIELDS
    if unknown:
        raise ScenarioError(where, f"unknown field(s) {', '.join(sorted(unknown))}")
    do = s.get("do")
    factor = NIGHT_SPEED_FACTOR if night else 1.0
    if do == "walk":
        speed = _speed(s, where) * factor
        return Step("walk", distance_m=_number(s, "distance_m", where), speed_mps=speed)
    if do == "stand":
        return Step("stand", seconds=_number(s, "seconds", where, minimum=0))
    if do == "drift":
        seconds = _number(s, "seconds", where, minimum=0.1)
        to = _number(s, "to_lateral_m", where)
        return Step("drift", seconds=seconds, to_lateral_m=to)
    if do == "move":
        return Step(
            "move",
            to_lateral_m=_number(s, "to_lateral_m", where),
            speed_mps=_speed(s, where) * factor,
        )
    raise ScenarioError(f"{where}.do", f"unknown step {do!r} (walk, stand, drift, move)")


def _speed(s: Mapping, where: str) -> float:
    speed = _number(s, "speed_mps", where, default=1.4, minimum=0.05)
    if speed > MAX_WALKING_SPEED_MPS:
        raise ScenarioError(
            f"{where}.speed_mps",
            f"{speed} m/s is faster than a person can walk on the track "
            f"(at most {MAX_WALKING_SPEED_MPS})",
        )
    return speed
