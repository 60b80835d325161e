"""The paper's claims judged on hand-made runs tables: supported, contradicted, inconclusive and untestable, paired
by seed and by Welch's comparison, against a deterministic rule, and the paper's wording quoted exactly."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from slidemap.reporting.claims import STATEMENTS, judge_claims

PAPER = Path("/work/shared/paper/ghorbanzadeh2021-unet-resunet-sentinel2.txt")
SITES = ("taiwan", "china", "japan")
SEED_NOISE = (0.00, 0.02, -0.01)  # shared by every run of a seed: pairing removes it
D = (0.00, 0.01, -0.01)  # per seed: what varies in a ResU-Net minus U-Net difference
E = (0.02, -0.02, 0.01)  # per seed: U-Net (and ResU-Net) at 128 px minus at 64 px
WINDOW = {32: (-0.05,) * 3, 64: (0.0,) * 3, 128: E}
T975 = {5: 2.570582, 17: 2.109816}


def _unet(area: str, scenario: str, window: int, seed: int) -> float:
    own = 0.6 if area == scenario else 0.4
    return own + SEED_NOISE[seed] + WINDOW[window][seed]


def table() -> list[dict]:
    """Runs of scenarios taiwan and china (no scenario `all`), windows 32/64/128, seeds 0-2. ResU-Net scores its
    U-Net twin + 0.05 + D on its own site and + 0.03 + D on the other sites: better at home (claim a holds) and
    better abroad too (claim b, U-Net transfers better, fails)."""
    runs = []
    for scenario in ("taiwan", "china"):
        for window in (32, 64, 128):
            for seed in range(3):
                for model in ("unet", "resunet"):
                    areas = {}
                    for a in SITES:
                        f1 = _unet(a, scenario, window, seed)
                        if model == "resunet":
                            f1 += (0.05 if a == scenario else 0.03) + D[seed]
                        areas[a] = {"precision": f1, "recall": f1, "f1": f1}
                    areas["all"] = {"precision": 0.5, "recall": 0.5, "f1": 0.5}
                    runs.append({"model": model, "window": window, "scenario": scenario, "seed": seed,
                                 "areas": areas})
    return runs


def _sd(values: list[float]) -> float:
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


@pytest.fixture(scope="module")
def claims() -> dict:
    return {c.claim: c for c in judge_claims(table())}


def test_a_supported_resunet_beats_unet_on_its_own_site(claims: dict) -> None:
    c = claims["a-resunet-beats-unet-own-site"]
    diffs = [0.05 + D[seed] for _ in range(2 * 3) for seed in range(3)]  # 2 scenarios x 3 windows x 3 seeds
    half = T975[17] * _sd(diffs) / math.sqrt(18)
    assert (c.n, c.verdict) == (18, "supported")
    assert c.effect == pytest.approx(5.0)
    assert (c.ci_low, c.ci_high) == pytest.approx((100 * (0.05 - half), 100 * (0.05 + half)), rel=1e-5)
    assert "paired by scenario, window, input set and seed" in c.comparison


def test_b_contradicted_unet_does_not_transfer_better(claims: dict) -> None:
    c = claims["b-unet-transfers-better"]
    diffs = [-(0.03 + D[seed]) for _ in range(6) for seed in range(3)]  # U-Net minus ResU-Net, off-site
    half = T975[17] * _sd(diffs) / math.sqrt(18)
    assert (c.n, c.verdict) == (18, "contradicted")
    assert c.effect == pytest.approx(-3.0)
    assert c.ci_high == pytest.approx(100 * (-0.03 + half), rel=1e-5) and c.ci_high < 0


def test_c_inconclusive_when_one_rival_window_is_not_beaten(claims: dict) -> None:
    c = claims["c1-unet-best-at-128"]
    # 128 vs 64 px: E per seed on every site (scenarios taiwan, china; `all` excepted): 6 pairs, mean 0.01 / 3
    diffs = [E[seed] for _ in range(2) for seed in range(3)]
    half = T975[5] * _sd(diffs) / math.sqrt(6)
    assert (c.n, c.verdict) == (6, "inconclusive")  # vs 32 px it is supported (+5 + E), vs 64 px not: inconclusive
    assert c.effect == pytest.approx(100 * 0.01 / 3)
    assert (c.ci_low, c.ci_high) == pytest.approx((100 * (0.01 / 3 - half), 100 * (0.01 / 3 + half)), rel=1e-5)
    assert "shown: vs 64 px" in c.comparison and "vs 32 px: +5.33" in c.comparison and "supported" in c.comparison
    # ResU-Net at 64 px: beats 32 px (+5), vs 128 px -E: inconclusive; scenario china excepted leaves 3 pairs each
    c2 = claims["c2-resunet-best-at-64"]
    assert (c2.n, c2.verdict) == (3, "inconclusive") and c2.effect == pytest.approx(-100 * 0.01 / 3)


def test_untestable_claims_say_why(claims: dict) -> None:
    d = claims["d-local-beats-all-sites"]
    assert d.verdict == "untestable" and d.n == 0 and math.isnan(d.effect)
    assert d.reason == "the sweep has no all-site training runs on a site that has its own scenario"
    assert not any(k.startswith(("e-", "f-")) for k in claims)  # one input set, no rules: no such claims
    only_all = [r for r in table() if r["scenario"] == "taiwan"]
    for r in only_all:
        r["scenario"] = "all"
    a = {c.claim: c for c in judge_claims(only_all)}["a-resunet-beats-unet-own-site"]
    assert a.verdict == "untestable" and "single-site scenario" in a.reason
    no128 = {c.claim: c for c in judge_claims([r for r in table() if r["window"] != 128])}["c1-unet-best-at-128"]
    assert no128.verdict == "untestable" and no128.reason == "the sweep has no unet runs at 128 px outside scenario all"


def test_d_pairs_local_with_all_site_training_on_the_same_site() -> None:
    runs = []
    for seed, (local, collective) in enumerate(((0.70, 0.60), (0.72, 0.64), (0.68, 0.59))):
        for scenario, f1 in (("china", local), ("all", collective)):
            runs.append({"model": "unet", "window": 64, "scenario": scenario, "seed": seed,
                         "areas": {"china": {"f1": f1}, "taiwan": {"f1": 0.1}}})
    d = {c.claim: c for c in judge_claims(runs)}["d-local-beats-all-sites"]
    half = 4.302653 * 0.01 / math.sqrt(3)  # differences 0.10, 0.08, 0.09: sd 0.01
    assert d.n == 3 and d.effect == pytest.approx(9.0)
    assert (d.ci_low, d.ci_high) == pytest.approx((100 * (0.09 - half), 100 * (0.09 + half)), rel=1e-5)
    assert d.verdict == "supported"
    assert "without a partner" not in d.comparison  # no taiwan scenario: the all-site runs' taiwan F1 is not used


def test_unpaired_seeds_fall_back_to_welch() -> None:
    """post runs of seeds 0-2, change runs of seeds 3-5: no pairs; Welch with equal variances: df = 4."""
    runs = [{"model": "unet", "window": 64, "scenario": "china", "seed": seed, "inputs": inputs,
             "areas": {"china": {"f1": f1}}}
            for inputs, seeds, f1s in (("post", (0, 1, 2), (0.5, 0.6, 0.7)), ("change", (3, 4, 5), (0.7, 0.8, 0.9)))
            for seed, f1 in zip(seeds, f1s)]
    e = {c.claim: c for c in judge_claims(runs)}["e-change-beats-post"]
    half = 2.776445 * math.sqrt(0.01 / 3 + 0.01 / 3)
    assert e.comparison.startswith("mean F1 over the site test areas, inputs change vs post; Welch:")
    assert "fewer than two pairs share model, window, scenario and seed" in e.comparison
    assert e.n == 6 and e.effect == pytest.approx(20.0)
    assert (e.ci_low, e.ci_high) == pytest.approx((100 * (0.2 - half), 100 * (0.2 + half)), rel=1e-5)
    assert e.verdict == "inconclusive"


def test_models_against_a_deterministic_rule() -> None:
    runs = [{"model": "unet", "window": 64, "scenario": "china", "seed": s, "dir": f"r{s}",
             "areas": {"china": {"f1": f}, "japan": {"f1": f - 0.2}, "all": {"f1": 0.0}}}
            for s, f in enumerate((0.70, 0.80, 0.90))]
    rule = {"scenarios": {"china": {"china": {"f1": 0.30}, "japan": {"f1": 0.10}, "all": {"f1": 0.2}}}}
    f = {c.claim: c for c in judge_claims(runs, {"ndvi": rule})}["f-unet-beats-ndvi-rule"]
    # model mean over china and japan: 0.60, 0.70, 0.80; rule: 0.20 -> differences 0.40, 0.50, 0.60
    assert f.n == 3 and f.effect == pytest.approx(50.0)
    assert (f.ci_low, f.ci_high) == pytest.approx((50 - 24.8414, 50 + 24.8414), abs=1e-3)
    assert f.verdict == "supported" and "NDVI + slope rule" in f.comparison


def test_statements_quote_the_paper() -> None:
    if not PAPER.is_file():
        pytest.skip(f"{PAPER} not here")
    text = PAPER.read_text()
    for key, statement in STATEMENTS.items():
        quotes = re.findall(r'"([^"]+)"', statement)
        assert quotes, key
        for quote in quotes:
            assert quote in text, (key, quote)
