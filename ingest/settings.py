"""Ingest settings: a TOML file, then environment variables, then command-line flags.

[ingest]
broker = "mqtt://127.0.0.1:1883"        # TRACKFENCE_BROKER
db = "postgresql://…"                    # TRACKFENCE_DB (or sqlite:///trial.sqlite)
client_id = "trackfence-ingest-1"        # TRACKFENCE_CLIENT_ID; keep it stable: it names
                                         # the persistent session the broker queues for
mqtt_protocol = "5"                      # TRACKFENCE_MQTT_PROTOCOL; or "3.1.1"
shard = "north"                          # TRACKFENCE_SHARD: protect only this file's
                                         # sites, sharing each with every worker that
                                         # protects it (README "Scaling out"; MQTT 5)
group = "ingest"                         # TRACKFENCE_GROUP: without shard, one group
                                         # sharing every device; with it, the fleet's
                                         # name, prefixing each site's share group
session_expiry_s = 604800                # how long the broker keeps a worker's session
                                         # (and queue) while it is away
tls_ca = "/etc/trackfence/ca.crt"        # TRACKFENCE_TLS_CA, with broker = "mqtts://…:8883"
username = "ingest"                      # TRACKFENCE_MQTT_USERNAME / _PASSWORD
batch_max_fixes = 500                    # a micro-batch closes at this many messages...
batch_max_wait_ms = 0                    # ...or this long after its first (0: never; it waits
                                         # only while that would double the batch)
spool = "/var/lib/trackfence/spool"     # TRACKFENCE_SPOOL
spool_max_mb = 512
stale_after_s = 300                      # a fix this much older than both its device's
                                         # newest fix and its receipt is dead-lettered
                                         # (time:stale); 10 s to 1 day

[[site]]
file = "examples/sites/ecm1-kings-cross.toml"
devices = ["*"]                          # supplier/device patterns working here

[supplier.acme]
datum = "WGS84"                          # or ETRS89 (RTK network corrections)

[[rfid_reader]]
id = "gate-3"
lat = 51.5571
lon = -0.1093
range_m = 2.5

[decisions]                              # geofence.breach.BreachConfig
lost_after_s = 10
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlparse

from geofence.breach import BreachConfig
from geofence.frames import DeviceDatum
from ingest.deployment import Deployment, SiteShare, fleet_conflicts, plan_shares
from ingest.pipeline import STALE_AFTER_S, check_stale_after_s
from wire.codecs import RfidReader


class SettingsError(ValueError):
    pass


_SHARD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


#: MQTT protocol versions ingest speaks (v5 is the default; 3.1.1 for older brokers)
PROTOCOLS = ("5", "3.1.1")


@dataclass
class IngestSettings:
    broker: str = "mqtt://127.0.0.1:1883"
    db: str = "sqlite:///trackfence.sqlite"
    client_id: str = "trackfence-ingest"
    group: str | None = None  # shared-subscription group of several workers (None: work alone)
    #: protect only these sites, subscribing only to their devices, each site's work shared
    #: by every worker protecting it (README "Scaling out"); `group` then names the fleet
    shard: str | None = None
    #: how long the broker keeps this worker's session, and the messages queued for it,
    #: while it is away (MQTT v5 Session Expiry Interval)
    session_expiry_s: int = 7 * 24 * 3600
    mqtt_protocol: str = "5"  # "5", or "3.1.1" for brokers without v5 (no shared groups)
    tls_ca: str | None = None  # for mqtts://: the CA that signed the broker's certificate
    username: str | None = None
    password: str | None = None
    batch_max_fixes: int = 500
    batch_max_wait_ms: float = 0.0
    spool: str = "spool"
    spool_max_mb: float = 512.0
    #: a fix more than this older than its device's newest fix and its own receipt is
    #: stale: dead-lettered (`time:stale`), never decided (ingest.pipeline.STALE_AFTER_S)
    stale_after_s: float = STALE_AFTER_S
    sites: list[tuple[str, list[str]]] = field(default_factory=list)  # (file, device patterns)
    supplier_datum: dict[str, str] = field(default_factory=dict)
    rfid_readers: list[RfidReader] = field(default_factory=list)
    decisions: BreachConfig = field(default_factory=BreachConfig)
    base: Path = field(default_factory=Path.cwd)  # relative site files resolve from here

    @property
    def paho_protocol(self) -> int:
        """paho's protocol constant; a shared group needs v5 (subscription identifiers)."""
        import paho.mqtt.client as mqtt

        if self.mqtt_protocol not in PROTOCOLS:
            raise SettingsError(
                f"mqtt_protocol {self.mqtt_protocol!r}: one of {', '.join(PROTOCOLS)}"
            )
        if (self.group or self.shard) and self.mqtt_protocol != "5":
            raise SettingsError(
                'a shared-subscription group or a shard needs MQTT 5 (mqtt_protocol = "5")'
            )
        return mqtt.MQTTv5 if self.mqtt_protocol == "5" else mqtt.MQTTv311

    @property
    def sharded(self) -> bool:
        return bool(self.shard)

    def site_shares(self) -> list[SiteShare]:
        """(Sharded) each site's topic filters and share group, checked: SettingsError if
        a site's device patterns are not topic filters or two of them overlap."""
        from loading.site_files import site_id_for

        if not self.sites:
            raise SettingsError("no [[site]] configured: an ingest worker needs at least one site")
        try:
            return plan_shares([(site_id_for(f), p) for f, p in self.sites], self.group)
        except ValueError as exc:
            raise SettingsError(f"shard {self.shard!r}: [[site]] devices: {exc}") from None

    @property
    def broker_host_port(self) -> tuple[str, int]:
        parsed = urlparse(self.broker)
        if parsed.scheme not in ("mqtt", "tcp", "mqtts") or not parsed.hostname:
            raise SettingsError(
                f"broker {self.broker!r} must look like mqtt://HOST:PORT or mqtts://HOST:PORT"
            )
        return parsed.hostname, parsed.port or (8883 if parsed.scheme == "mqtts" else 1883)

    @property
    def uses_tls(self) -> bool:
        return urlparse(self.broker).scheme == "mqtts"

    def deployment(self) -> Deployment:
        from loading.site_files import load_site

        if not self.sites:
            raise SettingsError("no [[site]] configured: an ingest worker needs at least one site")
        loaded, assignments = {}, []
        for file, patterns in self.sites:
            site = load_site(self.base / file)
            if site.name in loaded:
                raise SettingsError(f"two sites are named {site.name!r}")
            loaded[site.name] = site
            assignments += [(p, site.name) for p in patterns]
        try:
            datums = {s: DeviceDatum(d) for s, d in self.supplier_datum.items()}
        except ValueError as exc:
            raise SettingsError(f"[supplier] datum: {exc} (use ETRS89 or WGS84)") from None
        return Deployment(
            loaded, assignments, datums, rfid_readers={r.reader_id: r for r in self.rfid_readers}
        )


_ENV = {
    "TRACKFENCE_BROKER": "broker",
    "TRACKFENCE_DB": "db",
    "TRACKFENCE_CLIENT_ID": "client_id",
    "TRACKFENCE_GROUP": "group",
    "TRACKFENCE_SHARD": "shard",
    "TRACKFENCE_MQTT_USERNAME": "username",
    "TRACKFENCE_MQTT_PASSWORD": "password",
    "TRACKFENCE_SPOOL": "spool",
    "TRACKFENCE_MQTT_PROTOCOL": "mqtt_protocol",
    "TRACKFENCE_TLS_CA": "tls_ca",
}


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> IngestSettings:
    settings = IngestSettings()
    if path is not None:
        from loading.tomlfile import TomlFileError, read_toml

        path = Path(path)
        try:
            data = read_toml(path)
        except TomlFileError as exc:
            raise SettingsError(f"settings {path}: {exc}") from None
        settings.base = path.parent
        _apply_file(settings, data)
    for var, name in _ENV.items():
        value = (env if env is not None else os.environ).get(var)
        if value:
            setattr(settings, name, value)
    for name, value in (overrides or {}).items():
        if value is not None:
            setattr(settings, name, value)
    try:
        settings.stale_after_s = check_stale_after_s(settings.stale_after_s)
    except ValueError as exc:
        raise SettingsError(f"[ingest].{exc}") from None
    _check_shard_and_session(settings)
    _check_batching(settings)
    return settings


#: What the micro-batch settings may be: a batch of at least one message and at most what
#: the broker may have in flight to us; a wait no longer than a second.
BATCH_MAX_FIXES_RANGE = (1, 10_000)
BATCH_MAX_WAIT_MS_RANGE = (0.0, 1000.0)


def _check_batching(settings: IngestSettings) -> None:
    """The micro-batch settings, checked at load: a worker refuses to start on nonsense."""
    fixes, wait = settings.batch_max_fixes, settings.batch_max_wait_ms
    lo, hi = BATCH_MAX_FIXES_RANGE
    if isinstance(fixes, bool) or not isinstance(fixes, int) or not lo <= fixes <= hi:
        raise SettingsError(f"[ingest].batch_max_fixes: a whole number, {lo} to {hi:,}: {fixes!r}")
    lo_ms, hi_ms = BATCH_MAX_WAIT_MS_RANGE
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not lo_ms <= wait <= hi_ms:
        raise SettingsError(
            f"[ingest].batch_max_wait_ms: milliseconds, {lo_ms:g} to {hi_ms:g}: {wait!r}"
        )


def _check_shard_and_session(settings: IngestSettings) -> None:
    """The shard and session settings, checked at load so that a worker refuses to start."""
    expiry = settings.session_expiry_s
    if isinstance(expiry, bool) or not isinstance(expiry, int) or not 0 < expiry < 2**32:
        raise SettingsError(f"[ingest].session_expiry_s: whole seconds, 1 to 2**32-1: {expiry!r}")
    if settings.shard is not None:
        if not isinstance(settings.shard, str) or not _SHARD_NAME.fullmatch(settings.shard):
            raise SettingsError(
                f"[ingest].shard {settings.shard!r}: letters, digits, '.', '-' and '_'"
            )
        if settings.sites:  # (sites may still be given after loading, as the CLI's --site)
            settings.site_shares()


def check_fleet(shards: list[IngestSettings]) -> None:
    """SettingsError if, across these shards' settings, one device could be decided by two
    sites (README "Scaling out"; run it on a fleet's settings files before deploying)."""
    from loading.site_files import site_id_for

    plans: dict[str, list[tuple[str, list[str]]]] = {}
    for settings in shards:
        settings.site_shares()  # each on its own first
        plans.setdefault(str(settings.shard), []).extend(
            (site_id_for(f), p) for f, p in settings.sites
        )
    problems = fleet_conflicts(plans)
    if problems:
        raise SettingsError("; ".join(problems))


def _apply_file(settings: IngestSettings, data: Mapping) -> None:
    unknown = set(data) - {"ingest", "site", "supplier", "rfid_reader", "decisions"}
    if unknown:
        raise SettingsError(f"unknown settings table(s): {', '.join(sorted(unknown))}")
    simple = {f.name: f.type for f in fields(IngestSettings)}
    for key, value in (data.get("ingest") or {}).items():
        if key not in simple or key in (
            "sites",
            "supplier_datum",
            "rfid_readers",
            "decisions",
            "base",
        ):
            raise SettingsError(f"[ingest].{key}: unknown setting")
        setattr(settings, key, value)
    for i, site in enumerate(data.get("site") or []):
        if not isinstance(site.get("file"), str):
            raise SettingsError(f"site[{i}].file: the site file is required")
        patterns = site.get("devices", ["*"])
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise SettingsError(f"site[{i}].devices: a list of supplier/device patterns")
        settings.sites.append((site["file"], patterns))
    for supplier, table in (data.get("supplier") or {}).items():
        settings.supplier_datum[supplier] = str(table.get("datum", "ETRS89"))
    for i, r in enumerate(data.get("rfid_reader") or []):
        try:
            settings.rfid_readers.append(
                RfidReader(str(r["id"]), float(r["lat"]), float(r["lon"]), float(r["range_m"]))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SettingsError(f"rfid_reader[{i}]: needs id, lat, lon, range_m ({exc})") from None
    if "decisions" in data:
        try:
            settings.decisions = BreachConfig(**data["decisions"])
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"[decisions]: {exc}") from None
