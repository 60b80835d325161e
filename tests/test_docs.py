"""Docs that cannot rot: every command shown in README.md and docs/*.md still parses as written, and every link
between the docs resolves.

Each fenced ``bash`` block is read line by line: backslash continuations joined, ``# comments`` dropped, chains
(``&&``, ``;``, ``|``) split into commands. Then:

- ``python train.py ...`` / ``python eval.py ...``: composed with Hydra's compose API from ``conf/`` with the line's
  overrides, then put through the checks train.py and eval.py run before any work (:mod:`slidemap.config_checks`,
  new top-level keys). A ``-m`` sweep is composed once per value of each swept key, the other keys at their first
  value (every value is seen, without the whole product).
- ``slidemap ...``: parsed by the command's own parser (:func:`slidemap.cli.build_parser`), which does no work.
- ``python some/script.py``: the script exists.

Conventions for writers:

- ``<...>`` is a placeholder the reader fills in (``multirun/<date>/<time>``); it is replaced by ``PLACEHOLDER``
  before parsing (Hydra's override grammar has no ``<``). Upper-case words (``DIR``, ``CKPT``) parse as written.
- A block that is not a command to run as written (a synopsis with ``[optional]`` parts) is preceded by the line
  ``<!-- docs-test: skip REASON -->``; the reason is required.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import open_dict

from slidemap.config_checks import SCHEMAS, check_config
from slidemap.entrypoints import check_added_keys
from slidemap.errors import InputError
from slidemap.hydra_errors import hydra_error_line

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\b(?P<reason>[^>]*)-->")
FENCE = re.compile(r"^```")
PLACEHOLDER = re.compile(r"<[^<>\s]+>")
CHAIN = {"&&", "||", ";", "|", "&"}


@dataclass(frozen=True)
class Command:
    """One command of a docs block: where it is (for the failure message) and its words."""

    where: str
    text: str
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def fenced_blocks(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line number of the opening fence, info string, lines) of every fenced block; a block after a skip marker
    is left out."""
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if FENCE.match(lines[i]):
            start, info = i, lines[i][3:].strip()
            end = next(j for j in range(i + 1, len(lines)) if FENCE.match(lines[j]))
            marker = lines[start - 1] if start else ""
            if not SKIP.search(marker):
                blocks.append((start + 1, info, lines[start + 1:end]))
            i = end + 1
        else:
            i += 1
    return blocks


def commands_of(path: Path) -> list[Command]:
    """Every command of the ``bash`` blocks of ``path``."""
    found = []
    for fence_line, info, lines in fenced_blocks(path):
        if info != "bash":
            continue
        joined: list[tuple[int, str]] = []
        for offset, line in enumerate(lines, start=fence_line + 1):
            if joined and joined[-1][1].endswith("\\"):
                joined[-1] = (joined[-1][0], joined[-1][1][:-1] + " " + line.strip())
            else:
                joined.append((offset, line))
        for number, line in joined:
            lexer = shlex.shlex(PLACEHOLDER.sub("PLACEHOLDER", line), posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words: list[str] = []
            for word in [*lexer, ";"]:
                if word in CHAIN:
                    if words:
                        found.append(Command(f"{path.relative_to(REPO)}:{number}", line.strip(), tuple(words)))
                    words = []
                else:
                    words.append(word)
    return found


ALL = [c for path in DOCS for c in commands_of(path)]
HYDRA = [c for c in ALL if c.words[:2] in (("python", "train.py"), ("python", "eval.py"))]
CLI = [c for c in ALL if c.words[0] == "slidemap"]
SCRIPTS = [c for c in ALL if c.words[0] == "python" and len(c.words) > 1 and c.words[1].endswith(".py")
           and c not in HYDRA]


def compositions(overrides: list[str]) -> list[list[str]]:
    """The override lists to compose for one command line: itself, or for a sweep one list per value of each swept
    key with every other swept key at its first value."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    sweeps = [o for o in parsed if o.is_sweep_override()]
    if not sweeps:
        return [overrides]

    def one(values: dict[int, str]) -> list[str]:
        return [f"{o.get_key_element()}={values[i]}" if i in values else o.input_line
                for i, o in enumerate(parsed)]

    first = {parsed.index(o): next(iter(o.sweep_string_iterator())) for o in sweeps}
    lists = []
    for o in sweeps:
        for value in o.sweep_string_iterator():
            lists.append(one({**first, parsed.index(o): value}))
    return lists


def compose_and_check(name: str, overrides: list[str]) -> None:
    """What train.py / eval.py do with ``overrides`` before any work: compose, then check the settings."""
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = "/nonexistent/docs-test"
    HydraConfig.instance().set_config(cfg)
    try:
        check_added_keys(name)
        with open_dict(cfg):
            del cfg["hydra"]
        check_config(cfg, SCHEMAS[name])
    finally:
        HydraConfig.instance().cfg = None  # type: ignore[assignment]


def test_the_docs_show_commands_of_every_kind():
    # a parser that silently found nothing would pass every test below
    assert len(HYDRA) >= 20 and len(CLI) >= 15 and SCRIPTS, (len(HYDRA), len(CLI), len(SCRIPTS))
    assert any("-m" in c.words for c in HYDRA)


@pytest.mark.parametrize("command", HYDRA, ids=str)
def test_train_and_eval_lines_compose_and_pass_the_settings_checks(command: Command):
    name = command.words[1].removesuffix(".py")
    overrides = [w for w in command.words[2:] if w not in ("-m", "--multirun")]
    for composition in compositions(overrides):
        problem = None
        try:
            compose_and_check(name, composition)
        except HydraException as err:  # the line train.py would print (hydra_errors.py)
            problem = hydra_error_line(err, REPO / "conf", name)
        except InputError as err:  # the settings checks' line
            problem = str(err)
        if problem:
            pytest.fail(f"{command}\n  composed as: python {name}.py {' '.join(composition)}\n  error: {problem}",
                        pytrace=False)


@pytest.mark.parametrize("command", CLI, ids=str)
def test_slidemap_lines_parse(command: Command):
    from slidemap.cli import build_parser

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            build_parser().parse_args(list(command.words[1:]))
        except SystemExit:
            pytest.fail(f"{command}\n  {stderr.getvalue().strip()}", pytrace=False)


@pytest.mark.parametrize("command", SCRIPTS, ids=str)
def test_scripts_named_in_the_docs_exist(command: Command):
    assert (REPO / command.words[1]).is_file(), f"{command}: no such script"


# ----------------------------------------------------------------------------------------------------- links

LINK = re.compile(r"\]\(([^()\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose(path: Path) -> str:
    """The file without its fenced blocks and inline code, where brackets are code, not links."""
    kept, inside = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            inside = not inside
        elif not inside:
            kept.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(kept)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of the headings of ``path``: lower case, punctuation dropped, spaces to hyphens, a
    repeated heading numbered (-1, -2, ...)."""
    counts: dict[str, int] = {}
    found, inside = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        match = None if inside else HEADING.match(line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(2).lower()).replace(" ", "-")
            repeat = counts.get(slug, 0)
            found.add(f"{slug}-{repeat}" if repeat else slug)
            counts[slug] = repeat + 1
    return found


def test_anchor_rule_matches_githubs_on_hand_made_headings(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Weights & Biases\n## `blend_vs_grid.py`: the grid (issue 4)\n## Resume\n## Resume\n"
                    "```\n# not a heading\n```\n", encoding="utf-8")
    assert anchors(page) == {"weights--biases", "blend_vs_gridpy-the-grid-issue-4", "resume", "resume-1"}


LINKS = [(path, target) for path in DOCS for target in LINK.findall(prose(path))
         if not re.match(r"[a-z]+:", target)]


def test_the_docs_link_to_each_other():
    assert len(LINKS) >= 20


@pytest.mark.parametrize("path, target", LINKS, ids=lambda v: str(v.relative_to(REPO)) if isinstance(v, Path)
                         else v)
def test_links_between_the_docs_resolve(path: Path, target: str):
    file, _, anchor = target.partition("#")
    dest = (path.parent / file).resolve() if file else path
    assert dest.exists(), f"{path.relative_to(REPO)}: link to {target}: {file} does not exist"
    if anchor:
        assert dest.suffix == ".md", f"{path.relative_to(REPO)}: link to {target}: an anchor in a non-Markdown file"
        assert anchor in anchors(dest), (f"{path.relative_to(REPO)}: link to {target}: no heading of "
                                         f"{dest.relative_to(REPO)} has the anchor #{anchor}")


def test_the_readme_stays_short_and_its_pictures_small():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 160
    for picture in (REPO / "docs" / "img").glob("*.png"):
        assert picture.stat().st_size < 150_000, picture


def test_skipped_blocks_say_why():
    for path in DOCS:
        for match in SKIP.finditer(path.read_text(encoding="utf-8")):
            assert match.group("reason").strip(), f"{path.relative_to(REPO)}: a docs-test skip marker without a reason"
