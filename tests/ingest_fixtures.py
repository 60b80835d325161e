"""Write small Sentinel-2 products and DEM tiles in the providers' own formats (SAFE + JP2, zip, STAC + COG, ...).

A product is 120 x 120 px of 10 m (its SCL 60 x 60 px of 20 m) in UTM 51N around lon 121.0, lat 23.5, so a site
built from it crosses the 121st meridian, where the DEM tiles split.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer

UTM = "EPSG:32651"
ORIGIN = (295_200.0, 2_600_880.0)  # upper-left; lon 121.0, lat 23.5 lies inside (x 295771, y 2600293)
SHAPE = (120, 120)
DN = {"B2": 1500, "B3": 2000, "B4": 2500, "B8": 4000}
"""Base digital numbers; B2 also carries a position code (+ col + 120 * row, see ``dn_b2``)."""
ESA_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
FILE_BANDS = {"B2": "B02", "B3": "B03", "B4": "B04", "B8": "B08"}

# SCL (20 m pixel rows/cols) -> class. On the 10 m grid each block doubles: rows/cols * 2.
SCL_BLOCKS = {  # name: (row0, row1, col0, col1, class) in 20 m pixels
    "cloud": (10, 20, 10, 20, 9),      # 10 m rows 20-39, cols 20-39: 400 px
    "shadow": (30, 35, 40, 50, 3),     # 10 m rows 60-69, cols 80-99: 200 px
    "cirrus": (50, 55, 0, 5, 10),      # 10 m rows 100-109, cols 0-9: 100 px
    "water": (40, 45, 20, 30, 6),      # 10 m rows 80-89, cols 40-59: 200 px, kept by default
    "nodata": (0, 5, 55, 60, 0),       # 10 m rows 0-9, cols 110-119: 100 px, DN 0 in every band too
}
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
DEM_RES = 1.0 / 3600.0  # 1 arc-second, like GLO-30


def dn_b2(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """B2 digital number at product pixel (row, col): 1500 + col + 120 * row."""
    return DN["B2"] + cols + 120 * rows


def transform_at(origin: tuple[float, float], pixel: float) -> Affine:
    return Affine(pixel, 0.0, origin[0], 0.0, -pixel, origin[1])


def band_arrays(clouds: bool = True, gradient: bool = True,
                base: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """uint16 DNs of B2, B3, B4, B8 (120 x 120) and the SCL (60 x 60)."""
    base = base or DN
    rows, cols = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    out = {b: np.full(SHAPE, v, np.uint16) for b, v in base.items()}
    if gradient:
        out["B2"] = (base["B2"] + cols + 120 * rows).astype(np.uint16)
    scl = np.full((SHAPE[0] // 2, SHAPE[1] // 2), 4, np.uint8)
    if clouds:
        for r0, r1, c0, c1, cls in SCL_BLOCKS.values():
            scl[r0:r1, c0:c1] = cls
        r0, r1, c0, c1, _ = SCL_BLOCKS["nodata"]
        for b in out:
            out[b][2 * r0:2 * r1, 2 * c0:2 * c1] = 0
    out["SCL"] = scl
    return out


def write_raster(path: Path, data: np.ndarray, crs: str, transform: Affine, driver: str = "GTiff",
                 nodata: float | None = None, **options: Any) -> Path:
    """One band through GDAL: JP2 lossless (QUALITY=100, REVERSIBLE=YES) for SAFE, COG or GTiff otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": driver, "count": 1, "height": data.shape[0], "width": data.shape[1],
               "dtype": data.dtype.name, "crs": crs, "transform": transform, "nodata": nodata}
    if driver == "JP2OpenJPEG":
        options = {"QUALITY": 100, "REVERSIBLE": "YES", "RESOLUTIONS": 2, **options}
    with rasterio.open(path, "w", **profile, **options) as dst:
        dst.write(data, 1)
    return path


def safe_name(date: str, baseline: str, tile: str, level: str = "L2A", spacecraft: str = "S2B") -> str:
    return f"{spacecraft}_MSI{level}_{date}_N{baseline.replace('.', '')}_R046_{tile}_{date[:8]}T061234.SAFE"


def mtd_xml(level: str, name: str, date: str, baseline: str, offsets: dict[int, int] | None,
            spacecraft: str = "Sentinel-2B") -> str:
    """Product metadata trimmed from ESA's Level-2A / Level-1C User Product format (PSD 14.9)."""
    start = f"{date[:4]}-{date[4:6]}-{date[6:8]}T{date[9:11]}:{date[11:13]}:{date[13:15]}.024Z"
    lvl, ptype = ("2A", "S2MSI2A") if level == "L2A" else ("1C", "S2MSI1C")
    spectral = "\n".join(f'        <Spectral_Information bandId="{i}" physicalBand="{b}"><RESOLUTION>'
                         f'{10 if b in ("B2", "B3", "B4", "B8") else 20}</RESOLUTION></Spectral_Information>'
                         for i, b in enumerate(ESA_BANDS))
    if level == "L2A":
        quant = ('      <QUANTIFICATION_VALUES_LIST>\n        <BOA_QUANTIFICATION_VALUE unit="none">10000'
                 '</BOA_QUANTIFICATION_VALUE>\n        <AOT_QUANTIFICATION_VALUE unit="none">1000.0'
                 '</AOT_QUANTIFICATION_VALUE>\n        <WVP_QUANTIFICATION_VALUE unit="cm">1000.0'
                 '</WVP_QUANTIFICATION_VALUE>\n      </QUANTIFICATION_VALUES_LIST>')
        offs = ("      <BOA_ADD_OFFSET_VALUES_LIST>\n" + "\n".join(
            f'        <BOA_ADD_OFFSET band_id="{i}">{v}</BOA_ADD_OFFSET>' for i, v in offsets.items())
            + "\n      </BOA_ADD_OFFSET_VALUES_LIST>") if offsets is not None else ""
    else:
        quant = '      <QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>'
        offs = ("      <Radiometric_Offset_List>\n" + "\n".join(
            f'        <RADIO_ADD_OFFSET band_id="{i}">{v}</RADIO_ADD_OFFSET>' for i, v in offsets.items())
            + "\n      </Radiometric_Offset_List>") if offsets is not None else ""
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-{lvl}_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{lvl}.xsd" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" \
xsi:schemaLocation="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{lvl}.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>{start}</PRODUCT_START_TIME>
      <PRODUCT_STOP_TIME>{start}</PRODUCT_STOP_TIME>
      <PRODUCT_URI>{name}</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-{lvl}</PROCESSING_LEVEL>
      <PRODUCT_TYPE>{ptype}</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
      <GENERATION_TIME>{start}</GENERATION_TIME>
      <PREVIEW_IMAGE_URL>Not applicable</PREVIEW_IMAGE_URL>
      <PREVIEW_GEO_INFO>Not applicable</PREVIEW_GEO_INFO>
      <Datatake datatakeIdentifier="GS2B_{date}_038765_N{baseline}">
        <SPACECRAFT_NAME>{spacecraft}</SPACECRAFT_NAME>
        <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
        <DATATAKE_SENSING_START>{start}</DATATAKE_SENSING_START>
        <SENSING_ORBIT_NUMBER>46</SENSING_ORBIT_NUMBER>
        <SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>
      </Datatake>
      <Query_Options completeSingleTile="true"><PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT></Query_Options>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX>
      </Special_Values>
{quant}
{offs}
      <Spectral_Information_List>
{spectral}
      </Spectral_Information_List>
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-{lvl}_User_Product>
"""


def write_safe(parent: Path, *, date: str = "20240830T022529", baseline: str = "05.09",
               offsets: dict[int, int] | None = None, level: str = "L2A", tile: str = "T51QTF",
               crs: str = UTM, origin: tuple[float, float] = ORIGIN, clouds: bool = True, gradient: bool = True,
               base: dict[str, int] | None = None) -> Path:
    """A SAFE folder: MTD_MSIL2A.xml (or MTD_MSIL1C.xml) and the JP2 bands where ESA puts them.

    ``offsets`` is {band_id: offset}; default -1000 for all 13 bands from baseline 04.00 on, none before.
    """
    if offsets is None and baseline >= "04.00":
        offsets = {i: -1000 for i in range(13)}
    root = parent / safe_name(date, baseline, tile, level)
    granule = root / "GRANULE" / f"{level}_{tile}_A038765_{date[:8]}T023239" / "IMG_DATA"
    arrays = band_arrays(clouds, gradient, base)
    t10, t20 = transform_at(origin, 10.0), transform_at(origin, 20.0)
    for band, file_band in FILE_BANDS.items():
        if level == "L2A":
            write_raster(granule / "R10m" / f"{tile}_{date}_{file_band}_10m.jp2", arrays[band], crs, t10, "JP2OpenJPEG")
        else:
            write_raster(granule / f"{tile}_{date}_{file_band}.jp2", arrays[band], crs, t10, "JP2OpenJPEG")
    if level == "L2A":
        write_raster(granule / "R20m" / f"{tile}_{date}_SCL_20m.jp2", arrays["SCL"], crs, t20, "JP2OpenJPEG")
        # the 20 m resampled B02 is not a 10 m band: a reader must not take it
        write_raster(granule / "R20m" / f"{tile}_{date}_B02_20m.jp2", arrays["B2"][::2, ::2].copy(), crs, t20,
                     "JP2OpenJPEG")
    (root / f"MTD_MSI{level}.xml").write_text(mtd_xml(level, root.name, date, baseline, offsets))
    (root / "manifest.safe").write_text('<?xml version="1.0" encoding="UTF-8"?><xfdu:XFDU/>')
    return root


def zip_safe(safe: Path, zip_path: Path | None = None) -> Path:
    """The product as ESA ships it: a zip whose top entry is the .SAFE folder (deflated, with folder entries)."""
    zip_path = zip_path or safe.with_suffix(".zip")
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted([safe, *safe.rglob("*")]):
            arc = p.relative_to(safe.parent).as_posix()
            zf.write(p, arc + "/" if p.is_dir() else arc)
    return zip_path


def write_stac(folder: Path, *, date: str = "2024-08-30", origin: tuple[float, float] = ORIGIN, clouds: bool = True,
               style: str = "1.0", baseline: str = "05.09") -> Path:
    """A STAC item (Earth Search style) over local COGs: uint16 DN, raster:bands scale 0.0001, offset -0.1."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = band_arrays(clouds)
    t10, t20 = transform_at(origin, 10.0), transform_at(origin, 20.0)
    common = {"blue": "B2", "green": "B3", "red": "B4", "nir": "B8"}
    assets: dict[str, Any] = {}
    for key, band in common.items():
        write_raster(folder / f"{FILE_BANDS[band]}.tif", arrays[band], UTM, t10, "COG", nodata=0)
        asset = {"href": f"./{FILE_BANDS[band]}.tif", "type": COG_TYPE, "roles": ["data", "reflectance"]}
        if style == "1.0":
            asset["eo:bands"] = [{"name": FILE_BANDS[band], "common_name": key}]
            asset["raster:bands"] = [{"nodata": 0, "data_type": "uint16", "spatial_resolution": 10,
                                      "scale": 0.0001, "offset": -0.1}]
        else:  # STAC 1.1: one 'bands' list with the extension fields prefixed
            asset["bands"] = [{"name": FILE_BANDS[band], "eo:common_name": key, "nodata": 0,
                               "raster:scale": 0.0001, "raster:offset": -0.1}]
        assets[key] = asset
        assets[f"{key}-jp2"] = {**asset, "href": f"./missing_{FILE_BANDS[band]}.jp2", "type": "image/jp2"}
    write_raster(folder / "SCL.tif", arrays["SCL"], UTM, t20, "COG", nodata=0)
    assets["scl"] = {"href": "./SCL.tif", "type": COG_TYPE,
                     "roles": ["data"], "raster:bands": [{"nodata": 0, "data_type": "uint8"}]}
    assets["visual"] = {"href": "./missing_TCI.tif", "roles": ["visual"],
                        "eo:bands": [{"name": "red"}, {"name": "green"}, {"name": "blue"}]}
    item = {"type": "Feature", "stac_version": style + ".0", "id": f"S2B_51QTF_{date.replace('-', '')}_0_L2A",
            "collection": "sentinel-2-l2a", "bbox": [120.99, 23.49, 121.01, 23.51],
            "geometry": {"type": "Point", "coordinates": [121.0, 23.5]},
            "properties": {"datetime": f"{date}T02:25:29.024000Z", "s2:processing_baseline": baseline,
                           "proj:epsg": 32651}, "assets": assets, "links": []}
    path = folder / "item.json"
    path.write_text(json.dumps(item, indent=1))
    return path


def write_band_folder(folder: Path, *, date: str = "20240830T022529", clouds: bool = True,
                      origin: tuple[float, float] = ORIGIN, gradient: bool = True,
                      base: dict[str, int] | None = None) -> Path:
    """Single-band GeoTIFFs named by band (uint16 DN without scale metadata) and the SCL."""
    arrays = band_arrays(clouds, gradient, base)
    for band, file_band in FILE_BANDS.items():
        write_raster(folder / f"T51QTF_{date}_{file_band}_10m.tif", arrays[band], UTM, transform_at(origin, 10.0))
    write_raster(folder / f"T51QTF_{date}_SCL_20m.tif", arrays["SCL"], UTM, transform_at(origin, 20.0))
    return folder


def lonlat_plane(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The DEM's surface: 500 m + 3000 m per degree east + 4000 m per degree north, from (121.0, 23.5)."""
    return 500.0 + 3000.0 * (lon - 121.0) + 4000.0 * (lat - 23.5)


def write_dem_tile(path: Path, west: float, south: float, east: float, north: float, res: float = DEM_RES,
                   z: Callable[[np.ndarray, np.ndarray], np.ndarray] = lonlat_plane) -> Path:
    """A float32 DEM tile in EPSG:4326, pixel edges on the tile bounds (as GLO-30 tiles)."""
    width, height = round((east - west) / res), round((north - south) / res)
    t = Affine(res, 0.0, west, 0.0, -res, north)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    lon, lat = west + cols * res, north - rows * res
    return write_raster(path, z(lon, lat).astype(np.float32), "EPSG:4326", t, nodata=-32767.0)


def write_dem_utm(path: Path, bounds: Sequence[float], crs: str = UTM, res: float = 12.5) -> Path:
    """A float32 DEM in UTM (as ALOS PALSAR RTC 12.5 m), sampling ``lonlat_plane`` at its pixel centres."""
    left, bottom, right, top = bounds
    width, height = round((right - left) / res), round((top - bottom) / res)
    t = Affine(res, 0.0, left, 0.0, -res, top)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(left + cols * res, top - rows * res)
    return write_raster(path, lonlat_plane(np.asarray(lon), np.asarray(lat)).astype(np.float32), crs, t, nodata=-9999.0)


def split_dem(folder: Path, split_lon: float = 121.0, south: float = 23.48, north: float = 23.52,
              west: float = 120.98, east: float = 121.02) -> list[Path]:
    """Two tiles meeting on the meridian ``split_lon`` (named like Copernicus GLO-30 tiles)."""
    return [write_dem_tile(folder / "Copernicus_DSM_COG_10_N23_00_E120_00_DEM.tif", west, south, split_lon, north),
            write_dem_tile(folder / "Copernicus_DSM_COG_10_N23_00_E121_00_DEM.tif", split_lon, south, east, north)]
