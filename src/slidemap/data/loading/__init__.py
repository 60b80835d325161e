"""What feeds a network: the site DataModule with its loaders and batch augmentation (train.py, eval.py), and a whole
scene as normalised strips (``scene``, for ``slidemap map``)."""
