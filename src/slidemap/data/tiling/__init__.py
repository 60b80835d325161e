"""A ``Site`` -> training / validation / test blocks (``split``), the window grid of patches and the one normaliser
(``patches``), and training windows at random offsets (``offsets``)."""
