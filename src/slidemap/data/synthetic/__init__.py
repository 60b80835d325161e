"""The built-in synthetic three-site benchmark (docs/architecture.md), written to disk in the real site format."""

from slidemap.data.synthetic.writer import DEFAULT_SCALE, DEFAULT_SEED, ensure_synthetic, write_synthetic

__all__ = ["DEFAULT_SCALE", "DEFAULT_SEED", "ensure_synthetic", "write_synthetic"]
