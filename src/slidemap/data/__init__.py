"""Data layer: sites on disk -> Site objects -> split areas -> grid patches -> DataModule."""
