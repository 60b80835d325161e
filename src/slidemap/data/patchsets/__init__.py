"""Patch datasets (image + mask pairs): Landslide4Sense and ``data=patches`` folders, their files, layout, masks and
structure check, and the dataset.yaml ``slidemap dataset`` infers for a folder."""
