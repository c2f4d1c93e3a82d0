"""Devices: stand-ins for supplier hardware (devices.sim)."""
