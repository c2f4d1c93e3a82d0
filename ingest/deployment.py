"""What an ingest worker protects: its sites, which device works at which, how devices report.

A device is assigned to a site by the first matching pattern (`supplier/device`
globs, e.g. `acme/*`); a supplier's devices report in one datum (ETRS89 for RTK
network corrections, WGS84 for standalone/SBAS). RFID readers are surveyed
points with a read range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from geofence.frames import DeviceDatum
from geofence.site import Site
from wire.codecs import RfidReader


@dataclass
class Deployment:
    sites: dict[str, Site]
    assignments: list[tuple[str, str]]  # (device pattern, site name), first match wins
    supplier_datum: dict[str, DeviceDatum] = field(default_factory=dict)
    default_datum: DeviceDatum = DeviceDatum.ETRS89
    rfid_readers: dict[str, RfidReader] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for pattern, site in self.assignments:
            if site not in self.sites:
                raise ValueError(f"assignment {pattern!r} names unknown site {site!r}")
        self._cache: dict[str, str | None] = {}

    def site_of(self, device_id: str) -> str | None:
        if device_id not in self._cache:
            self._cache[device_id] = next(
                (site for pattern, site in self.assignments if fnmatchcase(device_id, pattern)),
                None,
            )
        return self._cache[device_id]

    def datum_of(self, supplier: str) -> DeviceDatum:
        return self.supplier_datum.get(supplier, self.default_datum)
