"""Hydra's own errors (an unknown option of a config group, an unknown key, bad override syntax) as one line.

Hydra prints these over several lines (the config search path, a hint about HYDRA_FULL_ERROR) and exits 1; every
other mistake a user types into train.py or eval.py is one line and exit 2 (:mod:`slidemap.entrypoints`). So the
entry points run their ``@hydra.main`` function through :func:`hydra_main`, which has Hydra raise its errors
(``HYDRA_FULL_ERROR=1``) and says them in slidemap's form, with the choices or the closest key.
"""

from __future__ import annotations

import difflib
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.errors import (ConfigCompositionException, HydraException, MissingConfigException,
                          OverrideParseException)
from omegaconf import DictConfig, OmegaConf

GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def _first(text: object) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _argv_overrides() -> list[str]:
    return [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]


def dotted_keys(node: Any, prefix: str = "") -> list[str]:
    """Every key of a config as a dotted path (``data.batch_size``)."""
    keys = []
    if isinstance(node, dict):
        for name, value in node.items():
            path = f"{prefix}{name}"
            keys.append(path)
            keys += dotted_keys(value, f"{path}.")
    return keys


def closest_key(key: str, config_dir: Path, config_name: str) -> str | None:
    """The key of the composed config (with the command's group choices) that ``key`` most likely meant."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    groups = [o for o in _argv_overrides() if "." not in o.split("=", 1)[0] and not o.startswith(("+", "~"))
              and "," not in o]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
            cfg: DictConfig = compose(config_name, overrides=groups)
    except Exception:  # the choices themselves may be what is wrong: no suggestion then
        return None
    finally:
        GlobalHydra.instance().clear()
    keys = dotted_keys(OmegaConf.to_container(cfg, resolve=False))
    match = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if not match:  # a typo in the last part only: compare the last parts under the same parent
        parent, _, leaf = key.rpartition(".")
        siblings = [k for k in keys if k.rpartition(".")[0] == parent]
        leaves = difflib.get_close_matches(leaf, [k.rpartition(".")[2] for k in siblings], n=1, cutoff=0.5)
        match = [f"{parent}.{leaves[0]}" if parent else leaves[0]] if leaves else []
    return match[0] if match else None


def hydra_error_line(err: HydraException, config_dir: Path, config_name: str) -> str:
    """One line that says what is wrong and what to type instead."""
    if isinstance(err, MissingConfigException) and err.options:
        group, _, option = str(err.missing_cfg_file).rpartition("/")
        near = difflib.get_close_matches(option, list(err.options), n=1)
        hint = f" (did you mean {group}={near[0]}?)" if near else ""
        return f"{group}: unknown option {option!r}; choose one of {', '.join(err.options)}{hint}"
    if isinstance(err, OverrideParseException):
        quote = (" (a value with spaces or special characters is quoted: 'key=\"a value\"')"
                 if " " in str(err.override) else "")
        return f"{err.override}: cannot parse this override ({_first(err.message)}){quote}; see {GRAMMAR}"
    message = _first(err)
    if isinstance(err, ConfigCompositionException) and message.startswith("Could not override '"):
        key = message.split("'")[1]
        cause = _first(err.__cause__) if err.__cause__ is not None else ""
        if "not in struct" in cause:
            near = closest_key(key, config_dir, config_name)
            if near:
                return f"{key}: unknown key; did you mean {near}?"
            if "." not in key:  # a top-level key nothing reads: adding it with + would be ignored
                return f"{key}: unknown key: no such setting (conf/{config_name}.yaml lists them)"
            return f"{key}: unknown key (a new argument is added with +{key}=VALUE)"
        return f"{key}: cannot be set: {cause or message}"
    if isinstance(err, ConfigCompositionException) and message.startswith("Ambiguous value for argument"):
        override = message.split("'")[1]
        return f"{override}: several values sweep only with -m (--multirun); a list value is written [a,b]"
    if message.startswith("You must specify '"):
        key = message.split("'")[1]
        options = [line.strip() for line in str(err).splitlines() if line.startswith("\t")]
        return f"{key}: missing: choose one of {', '.join(options)}"
    cause = f": {_first(err.__cause__)}" if err.__cause__ is not None else ""
    return f"{message}{cause}"


def hydra_main(main: Callable[[], Any], config_dir: Path, config_name: str) -> int:
    """Run a ``@hydra.main`` function; Hydra's composition and override errors end as one line and exit 2.

    ``HYDRA_FULL_ERROR=1`` set by the user keeps Hydra's full form (and its traceback)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        main()
        return 0
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors instead of printing them over several lines
    try:
        main()
    except HydraException as err:
        print(f"error: {' '.join(hydra_error_line(err, config_dir, config_name).split())}", file=sys.stderr)
        return 2
    except OSError as err:  # Hydra making the run or sweep folder (a read-only parent, a full disk)
        if err.filename is None:
            raise
        print(f"error: {err.filename}: cannot write the run's folder there: {err.strerror or err}", file=sys.stderr)
        return 2
    except Exception:  # a failure outside any job (a launcher's, say): the traceback, as Hydra would print it
        traceback.print_exc()
        return 1
    return 0
