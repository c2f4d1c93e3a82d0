"""Coordinate frames: where a fix, a fence and a rail asset meet in metres.

Three frames meet at a worksite:

* the device's: WGS84 latitude/longitude, either as realised today (ITRF at the
  fix epoch: standalone or SBAS GNSS) or in ETRS89 (GB RTK networks and OSTN15),
  which is fixed to the Eurasian plate. The two have drifted ~2.5 cm a year since
  1989 (about 0.9 m by 2026), so which one a device reports is configuration;
* the railway's: British National Grid (EPSG:27700), via OSTN15 only;
* the evaluation frame: an azimuthal equidistant projection of ETRS89 centred on
  the site, where a metre is a metre for the few kilometres a site spans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

import numpy as np
from pyproj import Transformer

from geofence import ostn15
from geofence.errors import CoordinateError

_ETRS89_GEOGRAPHIC = "+proj=longlat +ellps=GRS80 +no_defs"


class DeviceDatum(StrEnum):
    """The reference frame a device's latitude/longitude is expressed in."""

    ETRS89 = "ETRS89"  # RTK network corrections (OS Net and commercial GB networks)
    WGS84 = "WGS84"  # standalone/SBAS: ITRF-aligned, realised at the fix epoch


@cache
def _itrf_to_etrf() -> Transformer:
    # ITRF2014 geographic 3D -> ETRF2000 geographic 3D: a time-dependent Helmert in
    # PROJ's database (no grid needed). WGS84 (G2139) agrees with ITRF2014 to a centimetre.
    return Transformer.from_crs("EPSG:7912", "EPSG:7931", always_xy=True)


def check_latlon(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    """Which fixes have a latitude and longitude that are finite and in range.

    Parameters
    ----------
    lat_deg, lon_deg : array_like of float
        Degrees; in range is |lat| ≤ 90 and |lon| ≤ 180.

    Returns
    -------
    ndarray of bool

    >>> check_latlon([51.5, 91.0, np.nan], [-0.1, 0.0, 0.0]).tolist()
    [True, False, False]
    """
    lat = np.asarray(lat_deg, dtype=np.float64)
    lon = np.asarray(lon_deg, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)


def wgs84_to_etrs89(
    lat_deg: np.ndarray, lon_deg: np.ndarray, epoch_year: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Move WGS84-as-realised-today positions into ETRS89 at their own epochs.

    Parameters
    ----------
    lat_deg, lon_deg : array_like of float
        WGS84 (ITRF-aligned) latitudes and longitudes, degrees.
    epoch_year : array_like of float or float
        Each position's epoch as a decimal year (`epoch_year_from_ms`).

    Returns
    -------
    lat_deg, lon_deg : ndarray of float
        ETRS89 degrees: in Great Britain about 0.9 m south-west of the WGS84 position
        in 2026 (the Eurasian plate's drift since 1989).

    >>> lat, lon = wgs84_to_etrs89([51.5], [-0.1], 2026.0)
    >>> bool(lat[0] < 51.5 and lon[0] < -0.1)
    True
    """
    lat = np.asarray(lat_deg, dtype=np.float64)
    lon = np.asarray(lon_deg, dtype=np.float64)
    epoch = np.broadcast_to(np.asarray(epoch_year, dtype=np.float64), lat.shape)
    height = np.zeros_like(lat)
    lon_e, lat_e, _, _ = _itrf_to_etrf().transform(lon, lat, height, epoch)
    return np.asarray(lat_e), np.asarray(lon_e)


def epoch_year_from_ms(time_ms: np.ndarray) -> np.ndarray:
    """Decimal year of UTC epoch milliseconds (precise enough for plate motion: 1 day ≈ 0.07 mm).

    >>> epoch_year_from_ms(np.array([0, 1_767_225_600_000])).round(2).tolist()  # 2026-01-01
    [1970.0, 2026.0]
    """
    return 1970.0 + np.asarray(time_ms, dtype=np.float64) / (365.2425 * 86_400_000.0)


@dataclass(frozen=True)
class LocalFrame:
    """A site's metric evaluation frame: azimuthal equidistant on ETRS89, centred on the site.

    x is metres east and y metres north of the centre. Within a few kilometres of
    the centre scale error is below 1 part in 10⁷ (0.1 mm over a 1 km worksite).

    >>> frame = LocalFrame(51.56, -0.11)
    >>> x, y = frame.from_etrs89([51.56, 51.561], [-0.11, -0.11])
    >>> np.round(x, 3).tolist(), np.round(y, 1).tolist()  # a thousandth of a degree north
    ([0.0, 0.0], [0.0, 111.3])
    """

    lat0_deg: float
    lon0_deg: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.lat0_deg) and np.isfinite(self.lon0_deg)):
            raise CoordinateError("local frame centre must be a finite latitude/longitude")
        if not (-90 < self.lat0_deg < 90 and -180 <= self.lon0_deg <= 180):
            raise CoordinateError(
                f"local frame centre ({self.lat0_deg}, {self.lon0_deg}) is out of range"
            )

    @property
    def proj(self) -> str:
        """The frame as a PROJ string (azimuthal equidistant on GRS80)."""
        return (
            f"+proj=aeqd +lat_0={self.lat0_deg!r} +lon_0={self.lon0_deg!r} "
            "+ellps=GRS80 +units=m +no_defs"
        )

    @classmethod
    def centred_on_bng(cls, easting_m: float, northing_m: float) -> LocalFrame:
        """A frame centred on a British National Grid position (metres, via OSTN15).

        >>> frame = LocalFrame.centred_on_bng(530_000.0, 180_000.0)
        >>> x, y = frame.from_bng([530_000.0, 530_100.0], [180_000.0, 180_000.0])
        >>> np.round(x, 1).tolist()  # BNG's scale near London is 0.9997
        [0.0, 100.0]
        """
        lat, lon = ostn15.bng_to_etrs89(np.array([easting_m]), np.array([northing_m]))
        return cls(float(lat[0]), float(lon[0]))

    def _forward(self) -> Transformer:
        return _frame_transformers(self)[0]

    def _inverse(self) -> Transformer:
        return _frame_transformers(self)[1]

    def from_etrs89(
        self, lat_deg: np.ndarray, lon_deg: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """ETRS89 latitudes/longitudes (degrees) to this frame's metres.

        Returns (x_m, y_m), metres east and north of the centre; a fix failing
        `check_latlon` gives NaN, never an error.

        >>> x, y = LocalFrame(51.56, -0.11).from_etrs89([51.56, 95.0], [-0.11, 0.0])
        >>> np.round(x, 6).tolist(), np.isnan(y).tolist()
        ([0.0, nan], [False, True])
        """
        lat = np.asarray(lat_deg, dtype=np.float64)
        lon = np.asarray(lon_deg, dtype=np.float64)
        x, y = self._forward().transform(lon, lat)
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        bad = ~check_latlon(lat, lon)
        if bad.any():
            x = np.where(bad, np.nan, x)
            y = np.where(bad, np.nan, y)
        return x, y

    def from_device(
        self,
        lat_deg: np.ndarray,
        lon_deg: np.ndarray,
        datum: DeviceDatum,
        time_ms: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """A device's fixes to this frame's metres, honouring its reference frame.

        Parameters
        ----------
        lat_deg, lon_deg : array_like of float
            As the device reported them, degrees.
        datum : DeviceDatum
            ETRS89 (used as is) or WGS84 (moved into ETRS89 at each fix's epoch).
        time_ms : array_like of int, optional
            Fix times, UTC epoch ms: WGS84 fixes need them, the plate-motion
            correction depends on the epoch (CoordinateError without them).

        Returns
        -------
        x_m, y_m : ndarray of float
            Metres east and north of the centre (NaN where a fix is unusable).

        >>> frame = LocalFrame(51.56, -0.11)
        >>> x, y = frame.from_device([51.56], [-0.11], DeviceDatum.WGS84, [1_767_225_600_000])
        >>> bool(0.5 < float(np.hypot(x[0], y[0])) < 1.5)  # ~0.9 m of plate motion in 2026
        True
        """
        if DeviceDatum(datum) is DeviceDatum.WGS84:
            if time_ms is None:
                raise CoordinateError("WGS84 fixes need their fix times to move them into ETRS89")
            ok = check_latlon(lat_deg, lon_deg)
            lat = np.where(ok, lat_deg, 0.0)
            lon = np.where(ok, lon_deg, 0.0)
            lat, lon = wgs84_to_etrs89(lat, lon, epoch_year_from_ms(time_ms))
            lat = np.where(ok, lat, np.nan)
            lon = np.where(ok, lon, np.nan)
            return self.from_etrs89(lat, lon)
        return self.from_etrs89(lat_deg, lon_deg)

    def from_device_one(
        self, lat_deg: float, lon_deg: float, datum: DeviceDatum, time_ms: int | None = None
    ) -> tuple[float, float]:
        """`from_device` for one fix, on plain Python numbers.

        A lone fix through `from_device` pays numpy's per-call cost several times
        over; PROJ takes scalars directly and gives the same bits as it gives in an
        array (tests/test_coordinates.py holds the two equal).

        Returns (x_m, y_m), NaN for a fix failing `check_latlon`.

        >>> frame = LocalFrame(51.56, -0.11)
        >>> x, y = frame.from_device_one(51.561, -0.11, DeviceDatum.ETRS89)
        >>> round(x, 3), round(y, 1)
        (0.0, 111.3)
        """
        lat, lon = float(lat_deg), float(lon_deg)
        if not (math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180):
            return math.nan, math.nan
        if datum is DeviceDatum.WGS84 or datum == DeviceDatum.WGS84:
            if time_ms is None:
                raise CoordinateError("WGS84 fixes need their fix times to move them into ETRS89")
            epoch = 1970.0 + float(time_ms) / (365.2425 * 86_400_000.0)  # epoch_year_from_ms
            lon, lat, _, _ = _itrf_to_etrf().transform(lon, lat, 0.0, epoch)
        x, y = self._forward().transform(lon, lat)
        return float(x), float(y)

    def to_etrs89(self, x_m: np.ndarray, y_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """This frame's metres to ETRS89 (lat_deg, lon_deg).

        >>> lat, lon = LocalFrame(51.56, -0.11).to_etrs89([0.0], [0.0])
        >>> np.round(lat, 9).tolist(), np.round(lon, 9).tolist()
        ([51.56], [-0.11])
        """
        lon, lat = self._inverse().transform(np.asarray(x_m, float), np.asarray(y_m, float))
        return np.asarray(lat), np.asarray(lon)

    def from_bng(
        self, easting_m: np.ndarray, northing_m: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """British National Grid easting/northing (metres) to this frame's metres.

        Through OSTN15 only: a position off its grid raises CoordinateError, never an
        approximate answer.
        """
        lat, lon = ostn15.bng_to_etrs89(easting_m, northing_m)
        return self.from_etrs89(lat, lon)

    def to_bng(self, x_m: np.ndarray, y_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """This frame's metres to British National Grid (easting_m, northing_m), via OSTN15.

        >>> frame = LocalFrame.centred_on_bng(530_000.0, 180_000.0)
        >>> e, n = frame.to_bng([0.0], [0.0])
        >>> np.round(e, 3).tolist(), np.round(n, 3).tolist()
        ([530000.0], [180000.0])
        """
        lat, lon = self.to_etrs89(x_m, y_m)
        return ostn15.etrs89_to_bng(lat, lon)


@cache
def _frame_transformers(frame: LocalFrame) -> tuple[Transformer, Transformer]:
    """A frame's transformers, found by the frame itself (a lone fix looks them up once,
    and writing out the frame's PROJ string each time would cost more than the look-up)."""
    return _transformers(frame.proj)


@cache
def _transformers(proj: str) -> tuple[Transformer, Transformer]:
    return (
        Transformer.from_crs(_ETRS89_GEOGRAPHIC, proj, always_xy=True),
        Transformer.from_crs(proj, _ETRS89_GEOGRAPHIC, always_xy=True),
    )
