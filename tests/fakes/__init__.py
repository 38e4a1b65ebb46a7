"""Loopback servers that speak the real protocols (no mocks on network paths)."""
