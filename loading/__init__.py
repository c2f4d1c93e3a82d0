"""Loading from files: sites (TOML or GeoJSON, compiled once per content), TOML
documents with their errors named, and the bundled waymarks.

Ground floor: the geofence core parses through an injected reader; this is the I/O
in front of it that ingest, the simulator, trials, reporting and the CLI all share.
"""
