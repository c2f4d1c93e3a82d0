"""Make examples/fixes/ecm1-walk.csv: two workers on the ECM1 example site.

Worker A walks the cess and steps back to a position of safety; worker B, absorbed
in the task, drifts across the six-foot into the Up Fast danger zone and back.
Positions carry a little correlated GNSS noise and an honest reported accuracy.
(The full device simulator is devices/sim; this is a small, fixed example.)
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import shapely

from loading.site_files import load_site

HERE = Path(__file__).parent
START_MS = 1_795_000_000_000  # 2026-11-18 (UTC)


def main() -> None:
    site = load_site(HERE / "sites" / "ecm1-kings-cross.toml")
    track = shapely.LineString(site.lines[0].centreline_m)
    rng = np.random.default_rng(2026)
    rows = []
    for device, offsets in (
        ("A-0101", lambda s: -3.0 + 0 * s),
        ("B-0207", lambda s: np.interp(s, [0, 120, 160, 200, 400], [-2.0, -2.0, 4.2, -1.5, -1.5])),
    ):
        t = np.arange(0, 400, 1.0)  # 1 Hz, 400 s
        along = 402.3 + 30 + t * 1.0  # from 30 m inside the 2m 0000y limit, at 1 m/s
        lateral = offsets(t)
        base = shapely.get_coordinates(shapely.line_interpolate_point(track, along))
        ahead = shapely.get_coordinates(shapely.line_interpolate_point(track, along + 0.5))
        tangent = (ahead - base) / np.linalg.norm(ahead - base, axis=1, keepdims=True)
        left = np.column_stack([-tangent[:, 1], tangent[:, 0]])
        noise = np.cumsum(rng.normal(0, 0.05, (t.size, 2)), axis=0) * 0.3
        xy = base + left * lateral[:, None] + noise
        lat, lon = site.frame.to_etrs89(xy[:, 0], xy[:, 1])
        for i in range(t.size):
            rows.append(
                [device, START_MS + int(t[i] * 1000), i, f"{lat[i]:.9f}", f"{lon[i]:.9f}", 0.3]
            )
    rows.sort(key=lambda r: (r[1], r[0]))
    out = HERE / "fixes" / "ecm1-walk.csv"
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device", "time_ms", "seq", "lat", "lon", "accuracy_m"])
        w.writerows(rows)
    print(f"wrote {len(rows)} fixes to {out}")


if __name__ == "__main__":
    main()
