"""`trackfence trial run` and `trackfence trial score`: the trial's command-line edge."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

from geofence.errors import GeofenceError
from store import StoreError, open_store
from trials.definition import Trial, TrialError, load_trial
from trials.manifest import Manifest


def _progress(label: str, done: int, total: int) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(
        f"\r{label:<48.48} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,}"
    )
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _formats(text: str) -> tuple[str, ...]:
    from reporting.write import FORMATS

    chosen = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = set(chosen) - set(FORMATS)
    if unknown or not chosen:
        raise TrialError(f"--formats: choose from {', '.join(FORMATS)}")
    return chosen


def plan_command(args: argparse.Namespace) -> int:
    from trials.design import design, design_table
    from trials.harness.provision import provided_by_plan

    try:
        trial = load_trial(args.trial)
        planned = design(trial, provided_by_plan(trial))
    except (TrialError, GeofenceError, ValueError, OSError) as exc:
        print(f"trackfence trial: {exc}", file=sys.stderr)
        return 2
    print(f"{trial.name}: what each criterion needs at {planned.confidence:.0%} confidence\n")
    print(design_table(planned))
    short = planned.shortfalls()
    for line in short:
        print(f"cannot be demonstrated: {line}")
    return 1 if short else 0


def warn_design(trial: Trial) -> None:
    """Say up front which criteria this trial cannot demonstrate, before hours of running."""
    from trials.design import design
    from trials.harness.provision import provided_by_plan

    for line in design(trial, provided_by_plan(trial)).shortfalls():
        print(f"trackfence trial: warning: cannot be demonstrated: {line}", file=sys.stderr)


def run_command(args: argparse.Namespace) -> int:
    from trials.harness.runner import TrialRunError, run_trial

    try:
        trial = load_trial(args.trial)
        formats = _formats(args.formats)
        warn_design(trial)
        manifest = run_trial(
            trial,
            args.out,
            broker=args.broker,
            db=args.db,
            via_mqtt=args.via_mqtt,
            workers=args.workers,
            progress=_progress,
            command=["trackfence", *sys.argv[1:]] if sys.argv else None,
            replace=args.replace,
        )
        how = manifest.path if manifest.broker is None else f"over MQTT ({manifest.broker})"
        print(f"ran {manifest.phases.line(len(manifest.shifts))}; decided {how}", file=sys.stderr)
        for s in manifest.shifts:
            if s.ingest_alarms:
                print(f"trackfence trial: ingest raised {', '.join(s.ingest_alarms)} on "
                      f"shift {s.run_id}", file=sys.stderr)  # fmt: skip
        return _score(trial, manifest, args.out, args.db or manifest_db(args.out), formats)
    except (TrialError, TrialRunError, GeofenceError, StoreError, ValueError, OSError) as exc:
        print(f"trackfence trial: {exc}", file=sys.stderr)
        return 2


def manifest_db(out: Path) -> str:
    return f"sqlite:///{(out / 'trial.sqlite').resolve()}"


def score_command(args: argparse.Namespace) -> int:
    from trials.manifest import load_manifest

    try:
        trial = load_trial(args.trial)
        formats = _formats(args.formats)
        if trial.is_real:
            return _score_live(trial, args, formats)
        manifest = load_manifest(args.out)
        db = args.db or manifest.db
        if "***" in db:
            raise TrialError("the manifest's store URL has a password: give it again with --db")
        return _score(trial, manifest, args.out, db, formats)
    except (TrialError, GeofenceError, StoreError, ValueError, OSError) as exc:
        print(f"trackfence trial: {exc}", file=sys.stderr)
        return 2


def _score_live(trial: Trial, args: argparse.Namespace, formats: tuple[str, ...]) -> int:
    """A real trial: import the references as truth, then score what ingest stored."""
    from trials.harness.live import live_manifest

    if not args.db:
        raise TrialError(
            "a real trial is scored from the store ingest kept during its shifts: give it "
            "with --db postgresql://… or sqlite:///…"
        )
    store = open_store(args.db)
    try:
        store.migrate()
        manifest = live_manifest(
            trial, store, args.db, ["trackfence", *sys.argv[1:]] if sys.argv else None
        )
    finally:
        store.close()
    args.out.mkdir(parents=True, exist_ok=True)
    manifest.write(args.out)
    return _score(trial, manifest, args.out, args.db, formats)


def _score(trial: Trial, manifest: Manifest, out: Path, db: str, formats: tuple[str, ...]) -> int:
    from reporting.write import write_reports
    from trials.collect import collect
    from trials.manifest import changed_inputs
    from trials.score import score_trial

    changed = changed_inputs(trial, manifest)
    if changed:
        print(
            "trackfence trial: note: changed since the run (the report uses them as they are "
            f"now): {', '.join(changed)}",
            file=sys.stderr,
        )
    store = open_store(db)
    try:
        began = time.monotonic()
        collected = collect(trial, manifest, store, out, reopen=lambda: open_store(db))
        result = score_trial(trial, manifest, collected)
        scored = time.monotonic() - began
    finally:
        store.close()
    print(f"scored {len(result.rows.fixes):,} fixes in {scored:.1f} s "
          f"({len(result.rows.fixes) / max(scored, 1e-9):,.0f} fixes/s); rendering the reports…",
          file=sys.stderr)  # fmt: skip
    began = time.monotonic()
    written = write_reports(result, collected.worn, out, formats=formats)
    rendered = time.monotonic() - began
    print(summary_table(result))
    print(f"\nrendered {len(written)} report files in {rendered:.1f} s:")
    for path in written:
        if path.stem == "summary":
            print(f"  {path}")
    print(f"  (and one per supplier in {out / 'report'})")
    for line in result.missing:
        print(f"  missing: {line}")
    print(
        "to browse the breach log and the reports: trackfence token create --db "
        f"{shlex.quote(db)} --name you --role viewer; trackfence serve --db {shlex.quote(db)} "
        f"--reports {shlex.quote(str(out / 'report'))}"
    )
    return 0


def summary_table(result) -> str:
    """The end-of-run table: each supplier's verdict and headline figures."""

    def num(value: float, spec: str) -> str:
        return format(value, spec) if math.isfinite(value) else "n/m"

    rank = {r.supplier: r for r in result.ranking}
    lines = [
        f"{'supplier':<10} {'verdict':<16} {'met':>5} {'rank':>4} {'TRL':>3} {'R95 m':>6} "
        f"{'detected':>9} {'TTA p95 s':>9} {'FA/h':>5} {'alarm safe':>10} {'avail':>7}  "
        "NRA24-05 findings"
    ]
    for s in result.trial.suppliers:
        f = result.overall[s.key]
        r = rank[s.key]
        checks = [
            c.title.lower()
            for c in result.checks
            for x in c.results
            if x.supplier == s.key and x.status in ("fail", "found")
        ]
        lines.append(
            f"{s.key:<10} {result.overall_verdict(s.key):<16} {r.passed:>2}/{r.judged:<2} "
            f"{('=' if r.tied else '') + str(r.position):>4} {result.readiness[s.key].trl:>3} "
            f"{num(f.r95_m, '6.2f')} {f.detected:>4}/{f.excursions:<4} "
            f"{num(f.time_to_alert_p95_s, '9.1f')} {num(f.false_alerts_per_device_hour, '5.2f')} "
            f"{num(100 * f.false_alarm_share, '9.1f')}% {num(100 * f.availability, '6.2f')}%  "
            f"{', '.join(checks) or '-'}"
        )
    return "\n".join(lines)
