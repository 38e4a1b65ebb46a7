"""Twilio adapters: the pure Media Streams protocol (media), Flex token validation, REST stream
control, and task attributes written with If-Match.

May import: leaves (settings' small config objects, errors), relay.cluster for who owns a call.
"""
