"""The offline engine behind the same session seam: voice activity, PocketSphinx (local) or Whisper
(whisper), and the speech events they share.

May import: relay.model (the seam), relay.knowledge, leaves.
"""
