"""The trial's harness: what drives the simulator, ingest and the store.

`runner` runs a simulated trial (simulate every shift, decide it in-process
through ingest's pipeline, `replay`, or over MQTT to a live ingest) and writes
its manifest; `live` turns a real trial's shift log and reference tracks into the
store's truth and a manifest; `wear` wears a simulated shift live, for the
example real trial and its test; `provision` works out what a trial will give
each supplier before a run; `offline` scores one simulation without a store.
Everything else in `trials` is the scoring, and stands on none of this.
"""
