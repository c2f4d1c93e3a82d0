"""The trial's test bench: track workers, their true paths, and supplier devices reporting them.

Everything here is seeded and vectorised: the same scenario and seed give the
same fixes, byte for byte, and a six-hour shift of thirty devices at 10 Hz is
generated in seconds. The truth is what scoring compares against, so it is kept
at 10 Hz with every excursion out of the safe zone labelled.
"""
