"""The learning loop: what people said about renders, and what the studio learns from it.

``sampling`` (the K worst frames of a clip, to preview and tune on), ``feedback`` (A/B judgements and
approved training pairs, append-only), ``preference`` (P(A preferred over B) from the ratings), ``autotune``
(a style's parameters searched for the look that holds up best on the hardest frames).

May import: everything below it (the base, video, color, ml, quality, ``stylizers``, ``core.render``).
Not the studio, not ``trainer/`` (the fine-tuning beside it).
"""
