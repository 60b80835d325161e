"""Training: the LightningModule and the Hydra-driven run (fit, test, outputs)."""
