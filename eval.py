"""Evaluate a trained checkpoint on every test area as full mosaics: see README and conf/eval.yaml."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from slidemap.entrypoints import guarded
from slidemap.hydra_errors import hydra_main


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    return guarded("slidemap.evaluation.evaluate:run", cfg, schema="eval")


if __name__ == "__main__":
    sys.exit(hydra_main(main, Path(__file__).resolve().parent / "conf", "eval"))
