"""The synthetic benchmark's default seed and scale: plain constants the command line shows in its help."""

DEFAULT_SEED = 0
DEFAULT_SCALE = 0.1
