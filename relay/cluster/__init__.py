"""Several relays: the call directory (local, or shared in Redis) and the Redis pub/sub listener.

May import: sync_publisher (sequence counters, backoff), leaves.
"""
