"""The wire format: what devices and trackfence say to each other over MQTT.

The topic layout (`wire.topics`), the payload codecs that turn each device format
into bounded fixes or refuse it with a reason (`wire.codecs`), NMEA 0183 sentences
(`wire.nmea`) and RFID reads at surveyed readers. Ground floor: ingest decodes with
it and the device simulator encodes with it, and neither stands on the other.
"""
