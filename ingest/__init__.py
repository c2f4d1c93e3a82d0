"""The live service: supplier devices over MQTT in, decisions stored, alerts back to the wearer.

The pipeline micro-batches messages, decoded by the wire format (`wire`), through the
geofence core into the store; the service around it is the MQTT edge.
"""
