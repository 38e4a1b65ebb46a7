"""TaskRouter drives assist: the policy parser, the event model, the shared ledger (in memory or
Redis) and the driver.

May import: relay.twilio, relay.cluster, relay.wrapup, relay.assist (the live bridge it hands a
task to), leaves.
"""
