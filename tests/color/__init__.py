"""core/color: LUT readers, OpenColorIO agreement, the baked 8-bit path."""
