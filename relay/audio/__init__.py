"""Audio: the pure μ-law codec, streaming resampler and Transcoder (dsp), the bounded audio buffer,
and call audio files for the simulator.

May import: the standard library, numpy/scipy, relay.errors. Pure: no asyncio, no sockets.
"""
