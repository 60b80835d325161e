"""The `slidemap dataset` command: print (and with --write, write) the dataset.yaml a patch folder needs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from slidemap.errors import InputError


def flow(value: Any) -> str:
    """A value as one line of YAML (flow style)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text.removesuffix("...").strip()


def _comment(source: str) -> str:
    return f"  # {source}" if source else ""


def format_inference(inference: Any) -> str:
    """The inferred dataset.yaml: every key with what it was inferred from; guesses commented out; then what could
    not be inferred, the warnings and the problems (at most 20, then a count), all as YAML comments."""
    from slidemap.data.patchsets.check import summary

    lines = [f"# dataset.yaml inferred by `slidemap dataset` from {inference.root}",
             "# each key says what it was inferred from; a key commented out as GUESS was not: set it"]
    in_labels = False
    for e in inference.entries:
        if e.key.startswith("#"):
            lines.append(f"{e.key}: {e.source}")
            continue
        key, indent = e.key, ""
        if key.startswith("labels."):
            if not in_labels:
                lines.append("labels:  # mask encoding: landslide, background; unlabelled pixels get no loss, no score")
                in_labels = True
            key, indent = key.split(".", 1)[1], "  "
        value = "?" if e.value is None else flow(e.value)
        lines.append(f"{indent}{'' if e.certain else '# '}{key}: {value}{_comment(e.source)}")
    unknown = inference.unknown()
    if unknown:
        lines.append("# cannot infer (set these keys; the commented lines above propose values):")
        lines += [f"#   {e.key}" for e in unknown]
    lines += [f"# warning: {w}" for w in inference.warnings]
    if inference.problems:
        lines.append(f"# problems ({len(inference.problems)}; each names the file or key that fixes it):")
        lines += [f"#   {line}" for line in summary(inference.problems)]
    return "\n".join(lines) + "\n"


def _only_h5_key(path: Path) -> bool:
    """A dataset.yaml that says only which HDF5 datasets to read: the inference carries it over, so it may be
    replaced without --force."""
    try:
        meta = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return False
    return isinstance(meta, dict) and set(meta) == {"h5_key"}


def dataset_command(args: argparse.Namespace) -> int:
    from slidemap.data.patchsets.infer import infer
    from slidemap.io import atomic_path

    root = Path(args.root)
    if args.force and not args.write:
        raise InputError("--force", "goes with --write (it replaces a different dataset.yaml)")
    inference = infer(root)
    text = format_inference(inference)
    print(text, end="")
    if inference.problems:
        raise InputError(root, f"{len(inference.problems)} problem(s), listed above"
                               f"{': nothing written' if args.write else ''}")
    if not args.write:
        return 0
    target = root / "dataset.yaml"
    if target.is_file() and target.read_text() != text and not args.force and not _only_h5_key(target):
        raise InputError(target, "exists and differs from the inferred one: nothing written (--force replaces it)")
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return 0


def add_dataset_parser(sub: argparse._SubParsersAction) -> None:
    """The ``dataset`` subcommand and its arguments."""
    p = sub.add_parser("dataset", help="infer the dataset.yaml of a patch dataset as published",
                       description="Inspects a folder of image/mask patches as its authors published it and prints "
                                   "the dataset.yaml that data=patches needs, each key with what it was inferred "
                                   "from; keys it cannot infer are commented out for you to set.")
    p.add_argument("root", help="the dataset folder")
    p.add_argument("--write", action="store_true", help="write ROOT/dataset.yaml (refused when problems are found)")
    p.add_argument("--force", action="store_true", help="with --write: replace a dataset.yaml that differs")
    p.set_defaults(func=dataset_command)
