"""What is measured on frames and clips: a render against its input, and an input before it renders.

``metrics`` (per frame: SSIM, edge coherence, sharpness, colourfulness, warping error; logged by every
render and read by the Style Lab, the preference model and the auto-tuner), ``shots`` (shot analysis: the
nine scores that make a clip hard to stylise, and its difficulty).

May import: the base and ``core.video``.
"""
