"""The `relay` command: serve, demo, simulate (main), and the Media Streams simulator.

May import: everything.
"""
