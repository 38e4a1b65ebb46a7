"""What the assistant knows: knowledge passages (base), retrieval, and the prompt library.

May import: leaves only. Loading files stays in the functions that say so; the parsing is pure.
"""
