"""Make the example real trial's session: the drill worn live, its store and references.

    .venv/bin/python examples/real-trial/make_real_trial.py     # about five minutes

Wears `limit-board-drill.toml` (with the suppliers of `made-with.toml`) at its real pace through
an embedded MQTT broker into a live ingest, keeping what ingest stored in `live.sqlite`,
and writes each wearer's reference track (`references/*.gpx`, as a surveyor exports
them) and the shift log (`shifts.csv`). `trial.toml` then scores it as a real trial.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from ingest.embedded_broker import EMBEDDED_PROTOCOL, EmbeddedBroker  # noqa: E402
from trials.definition import load_trial  # noqa: E402
from trials.harness.wear import wear_live  # noqa: E402
from trials.schedule import plan  # noqa: E402


def main() -> None:
    made_with = load_trial(HERE / "made-with.toml")
    work = HERE / "session"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    db = f"sqlite:///{work / 'live.sqlite'}"
    with EmbeddedBroker() as broker:
        worn = wear_live(made_with, plan(made_with)[0], work, broker.url, db,
                         site_label="../sites/ecm1-kings-cross.toml",
                         mqtt_protocol=EMBEDDED_PROTOCOL)  # fmt: skip
    shutil.rmtree(HERE / "references", ignore_errors=True)
    shutil.move(str(work / "references"), HERE / "references")
    (HERE / "live.sqlite").unlink(missing_ok=True)
    shutil.move(str(work / "live.sqlite"), HERE / "live.sqlite")
    rows = list(csv.DictReader(worn.shift_log.read_text().splitlines()))
    with (HERE / "shifts.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    shutil.rmtree(work, ignore_errors=True)
    print(f"wore {worn.shift.scenario_name} live: {len(worn.sim.fixes):,} fixes sent")


if __name__ == "__main__":
    main()
