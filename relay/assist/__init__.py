"""One call, end to end: CallBridge owns its lifecycle and publishes transcripts, suggestions and
insights; the call's privacy (redaction session, pauses).

May import: every domain package below it (model, engines, knowledge, redaction, wrapup,
records, usage, twilio, audio); never relay.web or relay.cli.
"""
