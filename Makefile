# The two commands a new user needs (see README): `make demo` and `make test`.
# Everything below installs what it needs into ./.venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo real-trial check-demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The main job: the example ten-week trial of three suppliers, end to end (simulated
## devices -> embedded MQTT broker -> ingest -> SQLite -> scores -> reports in out/trial).
demo: $(STAMP)
	scripts/provision-report-libs.sh
	$(BIN)/trackfence trial run examples/trials/three-suppliers.toml --out out/trial --replace

## The example real trial: a session worn live (examples/real-trial/make_real_trial.py made
## it), scored from the store ingest kept against the wearers' reference tracks.
real-trial: $(STAMP)
	scripts/provision-report-libs.sh
	mkdir -p out/real-trial
	cp examples/real-trial/live.sqlite out/real-trial/live.sqlite
	$(BIN)/trackfence trial score examples/real-trial/trial.toml \
	    --db sqlite:///$(CURDIR)/out/real-trial/live.sqlite --out out/real-trial

## A recorded walk decided fix by fix against an ELR-defined worksite.
check-demo: $(STAMP)
	$(BIN)/trackfence geofence check examples/sites/ecm1-kings-cross.toml \
	    examples/fixes/ecm1-walk.csv --out out/ecm1-walk-decisions.csv

## The tests (ruff first: a lint failure is a test failure). The integration tests
## run a real Mosquitto and TimescaleDB: provision-services installs them once per
## machine (as root; about a minute the first time, nothing after).
test: $(STAMP)
	$(BIN)/ruff check .
	scripts/provision-services.sh
	scripts/provision-report-libs.sh
	$(BIN)/pytest

## Speed and memory against the peers, same run (not part of `make test`).
bench: $(STAMP)
	scripts/provision-services.sh
	$(BIN)/pytest benchmarks -o addopts="" --benchmark-only \
	    --benchmark-columns=min,median,max,ops --benchmark-sort=name

clean:
	rm -rf $(VENV) out .pytest_cache .benchmarks
