"""Train one model x window x scenario (or a sweep with -m): see README and conf/train.yaml."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from slidemap.entrypoints import guarded
from slidemap.hydra_errors import hydra_main


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return guarded("slidemap.training.run:run", cfg, schema="train")


if __name__ == "__main__":
    sys.exit(hydra_main(main, Path(__file__).resolve().parent / "conf", "train"))
