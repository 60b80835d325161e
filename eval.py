"""Evaluate a trained checkpoint on every test area as full mosaics: see README and conf/eval.yaml."""

import sys

import hydra
from omegaconf import DictConfig

from slidemap.entrypoints import guarded


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    return guarded("slidemap.evaluation.evaluate:run", cfg, schema="eval")


if __name__ == "__main__":
    sys.exit(main())
