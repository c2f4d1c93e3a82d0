"""The live service: supplier devices over MQTT in, decisions stored, alerts back to the wearer.

Payload codecs (`ingest.codecs`), the topic layout (`ingest.topics`), and the
pipeline that micro-batches fixes through the geofence core into the store.
"""
