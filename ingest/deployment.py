"""What an ingest worker protects: its sites, which device works at which, how devices report.

A device is assigned to a site by the first matching pattern (`supplier/device`
globs, e.g. `acme/*`); a supplier's devices report in one datum (ETRS89 for RTK
network corrections, WGS84 for standalone/SBAS). RFID readers are surveyed
points with a read range.

Sharded (README "Scaling out"), a worker protects only some sites and subscribes only to
their devices' topics: each site's patterns become topic filters (`plan_shares`), so they
must be ones MQTT can express, and no two sites may claim one device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from geofence.frames import DeviceDatum
from geofence.site import Site
from wire.codecs import RfidReader
from wire.topics import device_filters, patterns_overlap, share_name, shared


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


@dataclass(frozen=True)
class SiteShare:
    """One site's subscriptions when sharded: its devices' topic filters (every message,
    for their states) and the shared group in which every worker protecting the site,
    in whichever shard, takes its share of the effects (storing, alerting)."""

    site_id: str
    group: str
    filters: tuple[str, ...]

    @property
    def shared_filters(self) -> list[str]:
        return shared(self.group, list(self.filters))


def plan_shares(sites: list[tuple[str, list[str]]], fleet: str | None = None) -> list[SiteShare]:
    """The subscriptions of a worker protecting `sites` ((site id, device patterns) pairs).

    ValueError if a pattern is no topic filter, two sites have one id, or two patterns
    (of one site or two) can match the same device: its messages would then reach two
    share groups, and be stored and alerted twice.
    """
    plans, seen, claimed = [], set(), []  # claimed: (pattern, site id)
    for site_id, patterns in sites:
        if site_id in seen:
            raise ValueError(f"two sites have the id {site_id!r} (their files' names)")
        seen.add(site_id)
        filters: list[str] = []
        for pattern in dict.fromkeys(patterns):  # a pattern listed twice is one
            filters += device_filters(pattern)
            for other, other_site in claimed:
                if patterns_overlap(pattern, other):
                    raise ValueError(
                        f"{pattern!r} (site {site_id}) and {other!r} (site {other_site}) "
                        "can match the same device; sharded, each device belongs to one "
                        "pattern of one site"
                    )
            claimed.append((pattern, site_id))
        plans.append(SiteShare(site_id, share_name(fleet, site_id), tuple(filters)))
    return plans


def fleet_conflicts(shards: dict[str, list[tuple[str, list[str]]]]) -> list[str]:
    """Across shards (name -> (site id, patterns)): what would decide a device twice.

    A site may be in two shards at once (while it moves), with the same patterns: its
    workers then share one group. Two different sites (or one site with different
    patterns) whose patterns can match one device are a conflict.
    """
    entries = [
        (shard, site_id, pattern)
        for shard, sites in shards.items()
        for site_id, patterns in sites
        for pattern in dict.fromkeys(patterns)
    ]
    problems = []
    for i, (shard_a, site_a, pat_a) in enumerate(entries):
        for shard_b, site_b, pat_b in entries[i + 1 :]:
            if shard_a == shard_b or (site_a, pat_a) == (site_b, pat_b):
                continue
            if patterns_overlap(pat_a, pat_b):
                problems.append(
                    f"shard {shard_a} site {site_a} {pat_a!r} and shard {shard_b} site "
                    f"{site_b} {pat_b!r} can match the same device"
                )
    return problems
