"""Train one model x window x scenario (or a sweep with -m): see README and conf/train.yaml."""

import sys

import hydra
from omegaconf import DictConfig

from slidemap.entrypoints import guarded


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from slidemap.training.run import run

    return guarded(run, cfg)


if __name__ == "__main__":
    sys.exit(main())
