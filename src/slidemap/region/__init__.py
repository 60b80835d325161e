"""Map a whole region: one ``slidemap map`` job per Sentinel-2 product footprint, resumable, merged into one map."""
