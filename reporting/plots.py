"""The report's plots (matplotlib, no display): where people would rather look than read.

- error CDF per supplier, with the R95 criterion marked;
- time to alert per supplier (a strip of every detected excursion, the criterion marked);
- a breach timeline: one shift, the wearer's true distance to the edge and each
  supplier's breach periods;
- the site map of that shift: fences, tracks, the true path and each supplier's fixes;
- availability week by week.

High contrast and large type: the report is read in site cabins and printed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI

import matplotlib.pyplot as plt
import numpy as np
import shapely

from trials.collect import Worn
from trials.manifest import ShiftRecord
from trials.score import TrialResult

#: Colour-blind-safe (Okabe-Ito) colours, one per supplier in trial order.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]
STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 110,
    "savefig.bbox": "tight",
}


def _colours(result: TrialResult) -> dict[str, str]:
    return {s.key: PALETTE[i % len(PALETTE)] for i, s in enumerate(result.trial.suppliers)}


def error_cdf(result: TrialResult, path: Path, suppliers: list[str]) -> Path:
    colours = _colours(result)
    rows = result.rows
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        top = 0.0
        for s in suppliers:
            radial = np.sort(rows.fixes.error_m[rows.fix_mask(supplier=s)])
            if radial.size == 0:
                continue
            step = max(1, radial.size // 4000)  # a CDF needs no more points than pixels
            ax.plot(
                radial[::step],
                np.arange(radial.size)[::step] / radial.size,
                label=s,
                color=colours[s],
                lw=2,
            )
            top = max(top, float(np.percentile(radial, 99.5)))
        limit = result.trial.criteria.get("r95_m")
        if limit is not None:
            ax.axvline(limit, color="black", ls="--", lw=1.2, label=f"R95 limit {limit:g} m")
            ax.axhline(0.95, color="grey", ls=":", lw=1)
        ax.set_xlim(0, max(top, (limit or 0) * 1.2, 0.1))
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("horizontal error (m)")
        ax.set_ylabel("share of fixes")
        ax.set_title("Horizontal error against ground truth (CDF)")
        ax.legend(loc="lower right")
        fig.savefig(path)
        plt.close(fig)
    return path


def time_to_alert(result: TrialResult, path: Path, suppliers: list[str]) -> Path:
    colours = _colours(result)
    ex = result.rows.excursions
    rng = np.random.default_rng(0)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.8 * len(suppliers)))
        for i, s in enumerate(suppliers):
            m = ex.where(supplier=s)
            hit = ex.detected[m].astype(bool)
            tta = ex.time_to_alert_s[m][hit].astype(float)
            y = i + rng.uniform(-0.18, 0.18, tta.size)
            ax.scatter(tta, y, s=18, color=colours[s], alpha=0.8, edgecolors="none")
            saturated = int(ex.saturated[m].astype(bool).sum())
            none = int((~hit).sum()) - saturated
            said = [f"{saturated} saturated"] * bool(saturated) + [f"{none} no alarm"] * bool(none)
            if said:
                ax.annotate(
                    "not detected: " + ", ".join(said),
                    (1.0, i + 0.3),
                    xycoords=("axes fraction", "data"),
                    ha="right",
                    va="center",
                    color="#B00020",
                    fontweight="bold",
                    fontsize=9,
                )
        limit = result.trial.criteria.get("time_to_alert_p95_s")
        if limit is not None:
            ax.axvline(limit, color="black", ls="--", lw=1.2, label=f"p95 limit {limit:g} s")
            ax.legend(loc="lower left")
        ax.axvline(0, color="grey", lw=1)
        ax.set_yticks(range(len(suppliers)), suppliers)
        ax.set_ylim(-0.6, len(suppliers) - 0.4)
        ax.set_xlabel("time to alert (s): fresh alert minus the true crossing")
        ax.set_title("Time to alert, every crossing detected by a fresh alert")
        fig.savefig(path)
        plt.close(fig)
    return path


def availability_by_week(result: TrialResult, path: Path, suppliers: list[str]) -> Path:
    colours = _colours(result)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 3.6))
        for s in suppliers:
            weeks = result.weekly[s]
            ax.plot(
                [w["week"] for w in weeks],
                [100 * w["availability"] for w in weeks],
                marker="o",
                lw=2,
                color=colours[s],
                label=s,
            )
        limit = result.trial.criteria.get("availability")
        if limit is not None:
            ax.axhline(100 * limit, color="black", ls="--", lw=1.2, label=f"limit {limit:.1%}")
        ax.set_xlabel("trial week")
        ax.set_xticks(range(1, result.trial.weeks + 1))
        ax.set_ylabel("fixes the certificate promises,\nreceived (%)")
        ax.set_title("Availability over the trial")
        # beside the axes, never over the lowest points (which matter most)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        fig.savefig(path)
        plt.close(fig)
    return path


def pick_shift(result: TrialResult, worn: list[Worn]) -> int | None:
    """The shift that shows the most: the most true excursions, then the first."""
    counts: dict[int, int] = {}
    for w in worn:
        counts[w.shift] = counts.get(w.shift, 0) + int(w.excursion_start_ms.size)
    if not counts:
        return None
    return max(sorted(counts), key=lambda k: counts[k])


def breach_timeline(
    result: TrialResult, worn: list[Worn], shift: int, path: Path, suppliers: list[str]
) -> Path:
    """Per wearer: the true distance to the edge, and below it one lane per supplier."""
    colours = _colours(result)
    mine = [w for w in worn if w.shift == shift and w.supplier in suppliers]
    wearers = sorted({w.wearer for w in mine})
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            2 * len(wearers),
            1,
            figsize=(7.5, 2.9 * len(wearers)),
            sharex=True,
            squeeze=False,
            layout="constrained",
            gridspec_kw={"height_ratios": [3, 0.45 * len(suppliers) + 0.3] * len(wearers)},
        )
        for k, wearer in enumerate(wearers):
            top, lanes = axes[2 * k, 0], axes[2 * k + 1, 0]
            theirs = [w for w in mine if w.wearer == wearer]
            ref = theirs[0]
            t0 = ref.start_ms
            top.plot((ref.truth_ms - t0) / 60000, ref.truth_distance_m, color="black", lw=1.5)
            top.axhline(0, color="#B00020", lw=1)
            for start, end in zip(ref.excursion_start_ms, ref.excursion_end_ms, strict=True):
                top.axvspan((start - t0) / 60000, (end - t0) / 60000, color="#B00020", alpha=0.15)
            top.set_ylabel("inside by (m)")
            top.set_title(f"{wearer}: true distance inside the safe zone (red: excursions)")
            for lane, s in enumerate(suppliers):
                for w in (w for w in theirs if w.supplier == s):
                    spans = [
                        ((a - t0) / 60000, (min(b, w.end_ms) - a) / 60000)
                        for a, b in zip(w.alert_ms, w.alert_end_ms, strict=True)
                    ]
                    lanes.broken_barh(spans, (lane - 0.35, 0.7), color=colours[s])
            lanes.set_yticks(range(len(suppliers)), suppliers)
            lanes.set_ylim(-0.6, len(suppliers) - 0.4)
            lanes.invert_yaxis()
            lanes.grid(False)
            lanes.set_ylabel("breach", rotation=0, ha="right", va="center")
        axes[-1, 0].set_xlabel(f"minutes into the shift ({mine[0].run_id})")
        fig.savefig(path)
        plt.close(fig)
    return path


def site_map(
    result: TrialResult,
    worn: list[Worn],
    shift: int,
    site,
    path: Path,
    suppliers: list[str],
) -> Path:
    """The site straightened along the scenario's line (a track diagram), around an excursion.

    A worksite is hundreds of metres long and a few wide; drawn to scale it is a
    line. Drawn along the track, with the lateral scale opened out, the fences,
    the cess, the true path and every supplier's fixes can be told apart.
    """
    colours = _colours(result)
    mine = [w for w in worn if w.shift == shift and w.supplier in suppliers]
    record = result.manifest.shifts[shift]
    line, frame = _along(result, site, record)
    lo, hi = _window(mine, frame)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 4.6))
        _draw_site(ax, site, frame)
        for s in suppliers:
            _draw_configured_fence(ax, result, s, record, site, frame, colours[s])
        _draw_paths(ax, mine, frame, lo, hi, colours)
        for s in suppliers:
            ax.scatter([], [], s=20, color=colours[s], label=f"{s} fixes")
        ax.plot([], [], color="black", label="true path")
        ax.fill([], [], color="#009E73", alpha=0.3, label="safe zone")
        ax.fill([], [], color="#B00020", alpha=0.3, label="danger zone")
        ax.set_xlim(lo, hi)
        ax.set_ylim(-9, 9)
        ax.set_xlabel(f"metres along the {line.name}")
        ax.set_ylabel("metres to its left")
        ax.set_title(f"{site.name}\n{record.run_id} (drawn along the track)")
        ax.legend(loc="upper left", fontsize=8, ncols=3)
        fig.savefig(path)
        plt.close(fig)
    return path


def _along(result: TrialResult, site, record: ShiftRecord):
    """The line the map is drawn along, and its track frame: the scenario's line; a real
    shift names none, so then the site's blocked line."""
    from devices.sim.track import TrackFrame

    scenario = next(
        (sc.scenario for sc in result.trial.scenarios if sc.key == record.scenario), None
    )
    blocked = next((ln for ln in site.lines if not ln.open), site.lines[0])
    line = next(
        (ln for ln in site.lines if scenario is not None and ln.name == scenario.line), blocked
    )
    return line, TrackFrame.from_vertices(line.centreline_m)


def _window(mine: list[Worn], frame) -> tuple[float, float]:
    """The stretch of track drawn (metres along): 60 m either side of the first true
    excursion, else the whole path with 20 m beyond each end."""
    starts = np.concatenate([w.excursion_start_ms for w in mine]) if mine else np.zeros(0)
    ref = mine[0]
    if starts.size:
        t = int(starts.min())
        x0 = np.interp(t, ref.truth_ms, ref.truth_x_m)
        y0 = np.interp(t, ref.truth_ms, ref.truth_y_m)
        centre = float(frame.from_xy(np.array([x0]), np.array([y0]))[0][0])
        return centre - 60, centre + 60
    along, _ = frame.from_xy(ref.truth_x_m, ref.truth_y_m)
    return float(along.min()) - 20, float(along.max()) + 20


def _outline(geometry, frame) -> list[np.ndarray]:
    """Each polygon's exterior, in (along, left) metres of the track frame."""
    rings = []
    for poly in getattr(geometry, "geoms", [geometry]):
        ring = np.asarray(shapely.segmentize(poly.exterior, 1.0).coords)
        rings.append(np.column_stack(frame.from_xy(ring[:, 0], ring[:, 1])))
    return rings


def _draw_site(ax, site, frame) -> None:
    """The surveyed safe zones (green, outlined) and danger zones (red), and every line."""
    for zone in site.safe_zones:
        for ring in _outline(zone.geometry, frame):
            ax.fill(ring[:, 0], ring[:, 1], color="#009E73", alpha=0.15, lw=0)
            ax.plot(ring[:, 0], ring[:, 1], color="#006B4E", lw=1.4)
    for zone in site.danger_zones:
        for ring in _outline(zone.geometry, frame):
            ax.fill(ring[:, 0], ring[:, 1], color="#B00020", alpha=0.12, lw=0)
    for other in site.lines:
        a, lat = frame.from_xy(*other.centreline_m.T)
        ax.plot(a, lat, color="#444444", lw=1, ls="-.")


def _draw_configured_fence(ax, result: TrialResult, supplier: str, record: ShiftRecord, site,
                           frame, colour: str) -> None:  # fmt: skip
    """A supplier's own copy of the fence, where it configured one (fence alignment)."""
    from loading.site_files import load_site
    from trials.checks import in_frame

    copy = result.trial.supplier(supplier).configured_sites.get(Path(record.site_file))
    if copy is None:
        return
    configured = load_site(copy)
    for zone in configured.safe_zones:
        for ring in _outline(in_frame(zone.geometry, configured, site), frame):
            ax.plot(ring[:, 0], ring[:, 1], color=colour, lw=2, ls="--")
    ax.plot([], [], color=colour, lw=2, ls="--", label=f"{supplier}: its configured fence")


def _draw_paths(ax, mine: list[Worn], frame, lo: float, hi: float,
                colours: dict[str, str]) -> None:  # fmt: skip
    """Every supplier's fixes, and each wearer's true path, within the window."""
    for w in mine:
        a, lat = frame.from_xy(w.x_m, w.y_m)
        keep = (a >= lo) & (a <= hi)
        ax.scatter(a[keep], lat[keep], s=7, color=colours[w.supplier], alpha=0.55, lw=0)
    for w in {w.wearer: w for w in mine}.values():
        a, lat = frame.from_xy(w.truth_x_m, w.truth_y_m)
        keep = (a >= lo) & (a <= hi)
        ax.plot(a[keep], lat[keep], ".", ms=1.5, color="black")


def draw_all(
    result: TrialResult, worn: list[Worn], folder: Path, suppliers: list[str], prefix: str = ""
) -> dict[str, str]:
    """Every plot for a report, as PNG files in `folder`; names relative to it."""
    from loading.site_files import load_site

    folder.mkdir(parents=True, exist_ok=True)
    made = {
        "error_cdf": error_cdf(result, folder / f"{prefix}error-cdf.png", suppliers),
        "time_to_alert": time_to_alert(result, folder / f"{prefix}time-to-alert.png", suppliers),
        "availability": availability_by_week(
            result, folder / f"{prefix}availability.png", suppliers
        ),
    }
    shift = pick_shift(result, worn)
    if shift is not None:
        site = load_site(result.manifest.shifts[shift].site_file)
        made["breach_timeline"] = breach_timeline(
            result, worn, shift, folder / f"{prefix}breach-timeline.png", suppliers
        )
        made["site_map"] = site_map(
            result, worn, shift, site, folder / f"{prefix}site-map.png", suppliers
        )
    return {k: p.name for k, p in made.items()}
