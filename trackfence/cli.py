"""The `trackfence` command: wiring only; the work is in geofence/ and friends."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geofence.breach import BreachConfig
from geofence.errors import GeofenceError
from geofence.frames import DeviceDatum


def _parser() -> argparse.ArgumentParser:
    """The command line: one builder per command, in the order `--help` lists them."""
    parser = argparse.ArgumentParser(
        prog="trackfence", description="Geofence safety platform for railway track workers."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_geofence_commands, _ingest_commands, _sim_commands, _serve_commands,
                _token_commands, _trial_commands):  # fmt: skip
        add(commands)
    return parser


def _geofence_commands(commands: argparse._SubParsersAction) -> None:
    """`trackfence geofence check`: a recorded CSV decided fix by fix."""
    geofence = commands.add_parser("geofence", help="evaluate fixes against a site's safe zone")
    geo_commands = geofence.add_subparsers(dest="geofence_command", required=True)
    check = geo_commands.add_parser(
        "check",
        help="per-fix decisions for a recorded CSV of fixes",
        description="Decide every fix of a recorded CSV against a site: inside or not, which "
        "fence, signed distance to the edge, and the device's alarm state after it.",
    )
    check.add_argument("site", type=Path, help="site file: TOML (see README) or GeoJSON")
    check.add_argument(
        "fixes", type=Path, help="CSV with device, time_ms or time, lat, lon[, accuracy_m, seq]"
    )
    check.add_argument(
        "--out", type=Path, default=None, help="decisions CSV (default: FIXES-decisions.csv)"
    )
    check.add_argument(
        "--rejects", type=Path, default=None, help="rejected rows CSV (default: OUT.rejects.csv)"
    )
    check.add_argument(
        "--datum",
        choices=[d.value for d in DeviceDatum],
        default=DeviceDatum.ETRS89.value,
        help="the devices' reference frame: ETRS89 (RTK networks) or WGS84 (standalone/SBAS, "
        "moved to ETRS89 at each fix's epoch)",
    )
    for name, field in BreachConfig.__dataclass_fields__.items():
        check.add_argument(
            f"--{name.replace('_', '-')}",
            type=float,
            default=field.default,
            help=f"decision setting {name} (default {field.default})",
        )


def _ingest_commands(commands: argparse._SubParsersAction) -> None:
    """`trackfence ingest`: the live service."""
    ingest = commands.add_parser(
        "ingest",
        help="run the live service: devices over MQTT in, alerts out, everything stored",
        description="Subscribe to supplier devices, decide every fix against its site, alert the "
        "wearer, and keep fixes, events and alerts (see README: Ingest service).",
    )
    ingest.add_argument("--config", type=Path, help="settings TOML ([ingest], [[site]], …)")
    ingest.add_argument("--broker", help="mqtt://HOST:PORT (env TRACKFENCE_BROKER)")
    ingest.add_argument("--db", help="postgresql://… or sqlite:///FILE (env TRACKFENCE_DB)")
    ingest.add_argument(
        "--client-id", help="persistent MQTT session name (env TRACKFENCE_CLIENT_ID)"
    )
    ingest.add_argument("--spool", help="folder for batches while the database is away")
    ingest.add_argument(
        "--group", help="share the load with other workers of this group (env TRACKFENCE_GROUP)"
    )
    ingest.add_argument("--site", type=Path, help="a single site file, for every device")
    ingest.add_argument("-v", "--verbose", action="store_true", help="log every alarm and batch")


def _sim_commands(commands: argparse._SubParsersAction) -> None:
    """`trackfence sim run` and `sim import`: simulated devices and real recordings."""
    sim = commands.add_parser("sim", help="simulate supplier devices on a scenario")
    sim_commands = sim.add_subparsers(dest="sim_command", required=True)
    run = sim_commands.add_parser(
        "run",
        help="simulate a scenario and publish its fixes over MQTT",
        description="Generate the workers' true paths and their devices' fixes, write the "
        "truth beside the run, and publish the fixes to the broker (time-warped, or in real time).",
    )
    run.add_argument("scenario", type=Path, help="scenario TOML (see examples/scenarios)")
    run.add_argument("--broker", help="mqtt://HOST:PORT; without it, nothing is published")
    run.add_argument("--out", type=Path, default=Path("out/sim"), help="folder for truth files")
    run.add_argument("--realtime", action="store_true", help="publish at the pace of the shift")
    run.add_argument("--seed", type=int, help="override the scenario's seed")
    run.add_argument(
        "--db", help="also keep the truth in this store (postgresql://… or sqlite:///…)"
    )
    run.add_argument("--run-id", help="name of this run in the store (default: scenario and time)")
    imp = sim_commands.add_parser(
        "import",
        help="turn a real recording into a run (its reference as the truth)",
        description="Read a device log (CSV, NMEA or GPX) and a reference trajectory (CSV or "
        "GPX, e.g. an RTK survey), and write the truth and excursions as a simulated run would.",
    )
    imp.add_argument("log", type=Path, help="the device's recorded fixes")
    imp.add_argument("--reference", type=Path, required=True, help="where the wearer truly was")
    imp.add_argument("--site", type=Path, required=True, help="the site file")
    imp.add_argument("--device", required=True, help="supplier/device that made the log")
    imp.add_argument("--out", type=Path, default=Path("out/recording"), help="output folder")


def _serve_commands(commands: argparse._SubParsersAction) -> None:
    """`trackfence serve`: the console."""
    serve = commands.add_parser(
        "serve",
        help="the console API for the safety task force (breach log, devices, sites)",
        description="Serve the console API over the store ingest writes to. OpenAPI docs are "
        "at /docs. Every route but /health needs a token from `trackfence token create`, the "
        "docs too unless --public-docs.",
    )
    serve.add_argument("--db", help="postgresql://… or sqlite:///FILE (env TRACKFENCE_DB)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on")
    serve.add_argument("--reports", type=Path, help="a trial's report folder to serve")
    serve.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate…")
    serve.add_argument("--tls-key", type=Path, help="…and this key (see deploy/make-ca.sh)")
    serve.add_argument(
        "--broker",
        help="mqtt://HOST:PORT (env TRACKFENCE_BROKER): /health checks it and /metrics follows "
        "the ingest workers' health on it (credentials: TRACKFENCE_MQTT_USERNAME, _PASSWORD)",
    )
    serve.add_argument(
        "--public-docs",
        action="store_true",
        help="serve /docs and /openapi.json without a token (by default they need one)",
    )


def _token_commands(commands: argparse._SubParsersAction) -> None:
    """`trackfence token create`: the console's bearer tokens."""
    token = commands.add_parser("token", help="manage the console's bearer tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    tcreate = token_commands.add_parser(
        "create",
        help="issue a token (printed once; only its digest is kept)",
        description="Issue a console token for a role: viewer (read everything), operator "
        "(also manage sites), supplier (only its own data) or admin.",
    )
    tcreate.add_argument("--db", required=True, help="the console's store")
    tcreate.add_argument("--name", required=True, help="who or what holds it")
    tcreate.add_argument(
        "--role", required=True, choices=["viewer", "operator", "supplier", "admin"]
    )
    tcreate.add_argument("--supplier", help="for a supplier token: the supplier it may read")


def _trial_commands(commands: argparse._SubParsersAction) -> None:
    """`trackfence trial run`, `plan` and `score`."""
    trial = commands.add_parser("trial", help="run and score a supplier trial")
    trial_commands = trial.add_subparsers(dest="trial_command", required=True)
    trun = trial_commands.add_parser(
        "run",
        help="run every shift of a trial through the real pipeline, then score and report",
        description="Simulate every scenario of the trial for every supplier, decide every "
        "message the devices send as ingest does, keep everything in the store, then score "
        "against the ground truth and write the reports (HTML, PDF, JSON, Markdown). By "
        "default the messages go through ingest's pipeline in-process; --via-mqtt (or "
        "--broker) publishes them over MQTT to a live ingest service instead, with the same "
        "decisions. With no --db the store is a SQLite file in --out.",
    )
    trun.add_argument("trial", type=Path, help="trial TOML (see examples/trials)")
    trun.add_argument("--out", type=Path, default=Path("out/trial"), help="folder for the run")
    trun.add_argument(
        "--via-mqtt",
        action="store_true",
        help="publish every message over MQTT to a live ingest service (embedded broker "
        "unless --broker)",
    )
    trun.add_argument("--broker", help="mqtt://HOST:PORT of a Mosquitto (implies --via-mqtt)")
    trun.add_argument(
        "--workers",
        type=_workers,
        help="processes sharing the devices when deciding in-process (default: one per core)",
    )
    trun.add_argument("--db", help="postgresql://… (TimescaleDB) or sqlite:///… (default: OUT)")
    trun.add_argument(
        "--replace", action="store_true", help="run again into an --out that holds a run"
    )
    _report_options(trun)
    tplan = trial_commands.add_parser(
        "plan",
        help="what each criterion needs to be demonstrable, and what the trial provides",
        description="For each acceptance criterion, how many true crossings, device-hours, "
        "values or device-shifts it needs before it can pass on its confidence bound, what the "
        "trial's scenarios and schedule give each supplier, and which scenarios test no "
        "detection. Only the workers' true paths are simulated. Exit code 1 when a criterion "
        "cannot be demonstrated for some supplier.",
    )
    tplan.add_argument("trial", type=Path, help="trial TOML (see examples/trials)")
    tscore = trial_commands.add_parser(
        "score",
        help="score a real trial from the live store, or rescore a simulated run",
        description="A real trial (one with a shift log): import each wearer's reference "
        "track as the truth, score what ingest stored during the shifts in --db, and write "
        "the reports to --out. A simulated run: read the stored fixes, events and truth of "
        "the run in --out and write its scores and reports again; the trial file's criteria "
        "may have changed.",
    )
    tscore.add_argument("trial", type=Path, help="the trial TOML (with its shift log if real)")
    tscore.add_argument("--out", type=Path, default=Path("out/trial"), help="the run's folder")
    tscore.add_argument(
        "--db",
        help="the store: a real trial's live store (required), or a simulated run's "
        "(default: the one in its manifest)",
    )
    _report_options(tscore)


def _report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--formats",
        default="html,pdf,json,md",
        help="report formats, comma-separated (html, pdf, json, md; default all)",
    )


def _workers(text: str) -> int:
    """A count of worker processes, 1 to 64."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"between 1 and 64: {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "geofence" and args.geofence_command == "check":
        return _check(args)
    if args.command == "ingest":
        return _ingest(args)
    if args.command == "sim" and args.sim_command == "run":
        return _sim_run(args)
    if args.command == "sim" and args.sim_command == "import":
        return _sim_import(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "token":
        return _token(args)
    if args.command == "trial":
        from trackfence.trial_command import plan_command, run_command, score_command

        if args.trial_command == "plan":
            return plan_command(args)
        return run_command(args) if args.trial_command == "run" else score_command(args)
    return 2  # pragma: no cover - argparse rejects other commands


def _check(args: argparse.Namespace) -> int:
    from loading.site_files import load_site
    from trackfence.recorded import FixFileError, check_fixes

    out = args.out or args.fixes.with_name(args.fixes.stem + "-decisions.csv")
    rejects = args.rejects or out.with_suffix(".rejects.csv")
    try:
        config = BreachConfig(**{n: getattr(args, n) for n in BreachConfig.__dataclass_fields__})
        site = load_site(args.site)
        count = check_fixes(site, args.fixes, out, rejects, DeviceDatum(args.datum), config)
    except (GeofenceError, FixFileError, ValueError) as exc:
        print(f"trackfence: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"trackfence: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    return 1 if count else 0


def _sim_run(args: argparse.Namespace) -> int:
    import time
    from dataclasses import replace

    from devices.sim.generate import simulate
    from devices.sim.publish import publish, text_progress, write_truth
    from devices.sim.scenario import ScenarioError, load_scenario
    from loading.site_files import load_site

    try:
        scenario = load_scenario(args.scenario)
        if args.seed is not None:
            scenario = replace(scenario, seed=args.seed)
        sim = simulate(scenario, load_site(scenario.site_file))
    except (ScenarioError, GeofenceError) as exc:
        print(f"trackfence sim: {exc}", file=sys.stderr)
        return 2
    # the shift ends now (time-warped) or starts now (real time)
    now_ms = time.time_ns() // 1_000_000
    start_ms = now_ms if args.realtime else now_ms - round(scenario.duration_s * 1000)
    written = write_truth(sim, args.out, start_ms)
    if args.db:
        from devices.sim.publish import truth_records
        from store import StoreError, open_store

        run_id = args.run_id or f"{args.scenario.stem}-{start_ms}"
        try:
            store = open_store(args.db)
            store.migrate()
            store.write_truth(*truth_records(sim, run_id, start_ms))
            store.close()
        except StoreError as exc:
            print(f"trackfence sim: {exc}", file=sys.stderr)
            return 2
        written.append(f"{args.db} (run {run_id})")
    ex = sim.excursions
    print(
        f"{scenario.name}: {len(scenario.workers)} workers, {len(sim.fixes):,} fixes, "
        f"{len(ex.worker)} true excursion(s); truth in {', '.join(str(p) for p in written)}"
    )
    if args.broker:
        try:
            done = publish(
                sim, args.broker, start_ms, realtime=args.realtime, progress=text_progress
            )
        except (ValueError, OSError) as exc:
            print(f"trackfence sim: {exc}", file=sys.stderr)
            return 2
        print(f"published {done.messages:,} fixes in {done.seconds:.1f} s")
    return 0


def _sim_import(args: argparse.Namespace) -> int:
    from devices.sim.publish import write_truth
    from devices.sim.recordings import RecordingError, import_recording
    from loading.site_files import load_site

    try:
        site = load_site(args.site)
        run = import_recording(args.log, args.reference, site, args.device)
    except (RecordingError, GeofenceError) as exc:
        print(f"trackfence sim import: {exc}", file=sys.stderr)
        return 2
    written = write_truth(run, args.out, 0)
    print(
        f"{run.scenario.name}: {len(run.fixes):,} fixes, {len(run.excursions.worker)} true "
        f"excursion(s) over {run.scenario.duration_s:.0f} s; "
        f"truth in {', '.join(str(p) for p in written)}"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from reporting.console.app import create_app
    from store import StoreError, open_store

    db = args.db or os.environ.get("TRACKFENCE_DB")
    broker = args.broker or os.environ.get("TRACKFENCE_BROKER")
    if not db:
        print("trackfence serve: give --db or TRACKFENCE_DB", file=sys.stderr)
        return 2
    try:
        store = open_store(db)
        store.migrate()
    except StoreError as exc:
        print(f"trackfence serve: {exc}", file=sys.stderr)
        return 2
    app = create_app(
        store,
        reports_dir=args.reports,
        broker=broker,
        mqtt_username=os.environ.get("TRACKFENCE_MQTT_USERNAME"),
        mqtt_password=os.environ.get("TRACKFENCE_MQTT_PASSWORD"),
        tls_ca=os.environ.get("TRACKFENCE_TLS_CA"),
        public_docs=args.public_docs,
    )
    if (args.tls_cert is None) != (args.tls_key is None):
        print("trackfence serve: HTTPS needs both --tls-cert and --tls-key", file=sys.stderr)
        return 2
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        ssl_certfile=str(args.tls_cert) if args.tls_cert else None,
        ssl_keyfile=str(args.tls_key) if args.tls_key else None,
    )
    return 0


def _token(args: argparse.Namespace) -> int:
    from reporting.console.auth import issue_token
    from store import StoreError, open_store

    try:
        store = open_store(args.db)
        store.migrate()
        token = issue_token(store, args.name, args.role, args.supplier)
    except (StoreError, ValueError) as exc:
        print(f"trackfence token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _ingest(args: argparse.Namespace) -> int:
    import logging
    import signal

    from ingest.service import IngestService
    from ingest.settings import SettingsError, load_settings
    from store import StoreError

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings(
            args.config,
            overrides={
                "broker": args.broker,
                "db": args.db,
                "client_id": args.client_id,
                "spool": args.spool,
            },
        )
        if args.site is not None:
            settings.sites = [(str(args.site.resolve()), ["*"])]
        service = IngestService(settings)
    except (SettingsError, GeofenceError, StoreError, ValueError) as exc:
        print(f"trackfence ingest: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: service.request_stop())
    service.start()
    try:
        service.wait()
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
