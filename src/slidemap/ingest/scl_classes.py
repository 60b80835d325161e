"""The scene classification's classes (Sentinel-2 L2A SCL) and the ones masked by default: plain constants, so
the command line shows them in its help without importing rasterio."""

SCL_CLASSES: dict[int, str] = {
    0: "no data", 1: "saturated or defective", 2: "dark area / topographic shadow", 3: "cloud shadow",
    4: "vegetation", 5: "not vegetated", 6: "water", 7: "unclassified", 8: "cloud, medium probability",
    9: "cloud, high probability", 10: "thin cirrus", 11: "snow or ice",
}
"""The L2A scene classification legend (Sen2Cor)."""

DEFAULT_MASK_CLASSES: tuple[int, ...] = (0, 1, 3, 8, 9, 10)
"""Classes that become no-data: no data, saturated/defective, cloud shadow, cloud (medium, high), thin cirrus."""
