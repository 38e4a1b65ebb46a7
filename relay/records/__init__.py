"""Call records: the store seam, SQLite and PostgreSQL stores, the batching writer, the audio
recorder and files, retention.

May import: relay.audio, relay.twilio (media timestamps), relay.usage, leaves.
"""
