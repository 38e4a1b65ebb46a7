"""After the call: the wrap-up's schema and dispositions, live insights, the call's record for its
wrap-up, summarizers (OpenAI, extractive) and the wrap-up service.

May import: relay.twilio (task attributes), leaves.
"""
