"""The model side of a call: the RealtimeSession seam (session), pure server-event translation
(events) and link policy, the ModelLink shell, the OpenAI adapter, and the knowledge search tool
the model calls.

May import: relay.audio, relay.knowledge, relay.usage and leaves; never relay.web or relay.cli.
"""
