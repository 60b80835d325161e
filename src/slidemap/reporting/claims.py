"""The paper's claims judged on a sweep: per claim, the effect in F1 points with its 95% interval (paired by seed
where the design allows, Welch otherwise) and a verdict: supported, contradicted, inconclusive or untestable."""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from slidemap.reporting.baselines import RULES
from slidemap.reporting.stats import (INCONCLUSIVE, NAN, SUPPORTED, CONTRADICTED, UNTESTABLE, Interval, t_interval,
                                      verdict, welch_interval)
from slidemap.reporting.sweep import (DEFAULT_INPUTS, input_sets, mean_site_f1, own_site_f1, paper_runs, run_key,
                                      seed_of, transfer_f1)

CLAIMS_COLUMNS = ("claim", "statement", "comparison", "effect", "ci_low", "ci_high", "n", "verdict", "reason")
X = "\u2009×\u2009"  # the paper writes window sizes with thin spaces: 128 × 128
Sample = list[tuple[Hashable, float]]
"""(pair key, F1 as a fraction) per run: runs of the two sides with equal keys are a pair."""

STATEMENTS = {
    "a": 'Fig. 10: "The ResU-Net resulting scores were higher than the U-Net ones whenever the training and testing '
         'set belonged to the same study area" (the paper also counts scenario 1, all sites; judged here on the '
         "single-site scenarios).",
    "b": 'Conclusions: "although the ResU-Net led to higher performances, the U-Net has more transferability '
         'capabilities" (the paper gives no number for it).',
    "c1": f'"the U-Net model yielded a better performance for the sample size of 128{X}128 pixels, except for the '
          'first scenario"; the paper adds that it "did not observe a definitive advantage".',
    "c2": f'"the ResU-Net achieved the best results with a sample size of 64{X}64 pixels, except for the third '
          'scenario".',
    "d": 'Discussion: "local training data based only on each target study area often outperformed a collective '
         'training dataset" (the paper says "often"; judged on the mean over sites).',
    "e": 'Not a claim of the paper, which used one post-event image ("we only used the high-resolution image bands '
         'blue (2), green (3), red (4), and near-infrared (8)"); this project\'s question: do two dates help?',
    "f": 'Not tested in the paper (no rule baseline); its introduction says pixel-based approaches "fail to consider '
         'the geometric and contextual information" and that thresholds "are not directly transferable to other '
         'study areas".',
}


@dataclass(frozen=True)
class Claim:
    """One judged claim: effect and interval in F1 points (the claimed direction positive), its verdict and why."""

    claim: str
    statement: str
    comparison: str
    effect: float = NAN
    ci_low: float = NAN
    ci_high: float = NAN
    n: int = 0
    verdict: str = UNTESTABLE
    reason: str = ""

    def row(self) -> list[Any]:
        """claims.csv's row (effect and interval in F1 points; empty where there is none)."""
        return [self.claim, self.statement, self.comparison,
                *("" if math.isnan(v) else round(v, 4) for v in (self.effect, self.ci_low, self.ci_high)),
                self.n, self.verdict, self.reason]


def compare(a: Sample, b: Sample, a_name: str, b_name: str, pair_by: str) -> tuple[Interval, str, str]:
    """a - b: paired (t-interval over the pairs' differences) when each side has at most one run per key and two or
    more keys are shared; else Welch's comparison of the means. Returns (interval in fractions, how, why not)."""
    if not a or not b:
        return Interval(0, NAN), "", f"the sweep has no {a_name if not a else b_name} runs"
    da, db = dict(a), dict(b)
    unique = len(da) == len(a) and len(db) == len(b)
    shared = [k for k in da if k in db]
    if unique and (len(shared) >= 2 or (shared and min(len(a), len(b)) < 2)):
        left_out = len(a) + len(b) - 2 * len(shared)
        how = (f"paired by {pair_by}: {a_name} minus {b_name}, t-interval over {len(shared)} pair(s)"
               + (f" ({left_out} run(s) without a partner left out)" if left_out else ""))
        ci = t_interval([da[k] - db[k] for k in shared])
        return ci, how, "" if ci.has_interval else "one pair: no interval can be given"
    why = "the same seed repeats within a cell" if not unique else f"fewer than two pairs share {pair_by}"
    ci = welch_interval([v for _, v in a], [v for _, v in b])
    how = f"Welch: mean of {len(a)} {a_name} minus mean of {len(b)} {b_name} (not paired: {why})"
    return ci, how, "" if ci.has_interval else "a single run on one side: no interval can be given"


def judged(claim: str, statement: str, ci: Interval, how: str, reason: str) -> Claim:
    """A Claim from a comparison whose positive side is the claimed one: untestable without values, else the
    verdict of its interval; effect and interval in F1 points."""
    if ci.n == 0:
        return Claim(claim, statement, how, reason=reason)
    return Claim(claim, statement, how, 100 * ci.mean, 100 * ci.low, 100 * ci.high, ci.n, verdict(ci), reason)


def _sample(runs: list[dict[str, Any]], value: Any, key: Any) -> Sample:
    return [(key(r), v) for r in runs if (v := value(r)) is not None]


def _model_claim(runs: list[dict[str, Any]], claim: str, better: str, worse: str, value: Any, what: str) -> Claim:
    """``better`` beats ``worse`` on ``value`` (single-site scenarios), pairs of the same scenario, window, input set
    and seed."""
    key = lambda r: (r["scenario"], int(r["window"]), run_key(r)[3], seed_of(r))  # noqa: E731
    ci, how, why = compare(_sample([r for r in runs if r["model"] == better], value, key),
                           _sample([r for r in runs if r["model"] == worse], value, key),
                           better, worse, "scenario, window, input set and seed")
    why = f"{why} of a single-site scenario with its test areas" if ci.n == 0 else why
    return judged(claim, STATEMENTS[claim[:1]], ci, f"{what}; {how}" if how else what, why)


def window_claim(runs: list[dict[str, Any]], claim: str, model: str, window: int, except_scenario: str) -> Claim:
    """``model`` is best at ``window``: it beats each other window of the sweep (an intersection: supported only
    when every comparison is, contradicted when any is); the row shows the closest rival."""
    what = (f"{model}'s mean F1 over the site test areas at {window} px minus at each other window, scenario "
            f"{except_scenario} left out as the paper excepts it")
    mine = [r for r in runs if r["model"] == model and r["scenario"] != except_scenario]
    key = lambda r: (r["scenario"], run_key(r)[3], seed_of(r))  # noqa: E731
    at = _sample([r for r in mine if int(r["window"]) == window], mean_site_f1, key)
    if not at:
        return Claim(claim, STATEMENTS[claim[:2]], what, reason=f"the sweep has no {model} runs at {window} px "
                                                                   f"outside scenario {except_scenario}")
    others = sorted({int(r["window"]) for r in mine} - {window})
    if not others:
        return Claim(claim, STATEMENTS[claim[:2]], what, reason=f"the sweep has no other window for {model}")
    rows = []
    for w in others:
        ci, how, why = compare(at, _sample([r for r in mine if int(r["window"]) == w], mean_site_f1, key),
                               f"{window} px", f"{w} px", "scenario, input set and seed")
        rows.append((w, judged(claim, STATEMENTS[claim[:2]], ci, how, why)))
    verdicts = {c.verdict for _, c in rows}
    overall = (SUPPORTED if verdicts == {SUPPORTED} else CONTRADICTED if CONTRADICTED in verdicts
               else INCONCLUSIVE if verdicts - {UNTESTABLE} else UNTESTABLE)
    w, closest = min(rows, key=lambda item: (math.isnan(item[1].effect), item[1].effect))
    rest = "; ".join(f"vs {v} px: {c.effect:+.2f} [{c.ci_low:.2f}, {c.ci_high:.2f}], {c.verdict}"
                     for v, c in rows if v != w)
    return Claim(claim, closest.statement, f"{what}; shown: vs {w} px, {closest.comparison}"
                 + (f"; {rest}" if rest else ""), closest.effect, closest.ci_low, closest.ci_high, closest.n,
                 overall, closest.reason)


def local_claim(runs: list[dict[str, Any]]) -> Claim:
    """(d) Training on a site's own training area beats training on all sites, on that site's test area."""
    local = _sample([r for r in runs if r["scenario"] != "all"], own_site_f1,
                    lambda r: (r["model"], int(r["window"]), run_key(r)[3], seed_of(r), r["scenario"]))
    sites = {k[4] for k, _ in local}
    collective = [((r["model"], int(r["window"]), run_key(r)[3], seed_of(r), s), r["areas"][s]["f1"])
                  for r in runs if r["scenario"] == "all" for s in sorted(sites)
                  if s in r["areas"] and r["areas"][s]["f1"] is not None]
    ci, how, why = compare(local, collective, "local training", "all-site training",
                           "model, window, input set, seed and site")
    what = "F1 on a site's own test area, trained on that site (scenario <site>) vs on all sites (scenario all)"
    why = f"{why} on a site that has its own scenario" if ci.n == 0 else why
    return judged("d-local-beats-all-sites", STATEMENTS["d"], ci, f"{what}; {how}" if how else what, why)


def input_claims(runs: list[dict[str, Any]]) -> list[Claim]:
    """(e) Each two-date input set beats the post-event one, same model, window, scenario and seed."""
    key = lambda r: (r["model"], int(r["window"]), r["scenario"], seed_of(r))  # noqa: E731
    post = _sample([r for r in runs if run_key(r)[3] == DEFAULT_INPUTS], mean_site_f1, key)
    out = []
    for inputs in [i for i in input_sets(runs) if i != DEFAULT_INPUTS]:
        ci, how, why = compare(_sample([r for r in runs if run_key(r)[3] == inputs], mean_site_f1, key), post,
                               inputs, DEFAULT_INPUTS, "model, window, scenario and seed")
        what = f"mean F1 over the site test areas, inputs {inputs} vs {DEFAULT_INPUTS}"
        out.append(judged(f"e-{inputs}-beats-post", STATEMENTS["e"], ci, f"{what}; {how}" if how else what, why))
    return out


def rule_claims(runs: list[dict[str, Any]], rules: dict[str, dict]) -> list[Claim]:
    """(f) Each model beats each rule baseline: the model's runs minus the rule's F1 of the same scenario (the rule
    is deterministic, so the interval is over the model's runs)."""
    out = []
    for model in dict.fromkeys(r["model"] for r in runs):
        for method, result in rules.items():
            per_scenario = result.get("scenarios", {})
            pairs = [(i, mean_site_f1(r), mean_site_f1({"areas": per_scenario[r["scenario"]]}))
                     for i, r in enumerate(runs) if r["model"] == model and r["scenario"] in per_scenario]
            pairs = [p for p in pairs if p[1] is not None and p[2] is not None]
            ci, how, why = compare([(i, v) for i, v, _ in pairs], [(i, v) for i, _, v in pairs], model,
                                   f"the {RULES[method].name} rule", "training scenario (one rule value per scenario)")
            what = (f"mean F1 over the site test areas, {model} (input set {DEFAULT_INPUTS} when several) minus the "
                    f"{RULES[method].name} rule fitted on the same scenario")
            out.append(judged(f"f-{model}-beats-{method}-rule", STATEMENTS["f"], ci,
                              f"{what}; {how}" if how else what, why))
    return out


def judge_claims(runs: list[dict[str, Any]], rules: dict[str, dict] | None = None) -> list[Claim]:
    """Every claim on the sweep's runs: (a)-(d) on the paper's input set; (e) when the sweep has two-date input
    sets; (f) per model and rule baseline given ({method: ``run_baseline`` result})."""
    paper = paper_runs(runs)
    claims = [
        _model_claim(paper, "a-resunet-beats-unet-own-site", "resunet", "unet", own_site_f1,
                     "F1 on the trained site's own test area (single-site scenarios)"),
        _model_claim(paper, "b-unet-transfers-better", "unet", "resunet", transfer_f1,
                     "mean F1 on the other sites' test areas (single-site scenarios)"),
        window_claim(paper, "c1-unet-best-at-128", "unet", 128, "all"),
        window_claim(paper, "c2-resunet-best-at-64", "resunet", 64, "china"),
        local_claim(paper),
        *input_claims(runs),
    ]
    return claims + (rule_claims(paper, rules) if rules else [])


def _points(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:+.2f}"


def claims_section(claims: list[Claim], seeds: int) -> list[str]:
    """report.md's section: how to read a verdict, one table row per claim, and how each was compared."""
    design = ("With one seed per cell the pairs come from different windows and scenarios: an interval then says how "
              "consistent the effect is across the design, not how much it moves from seed to seed."
              if seeds < 2 else f"The sweep has {seeds} seeds; pairs are runs of the same seed.")
    lines = ["## The paper's claims, judged", "",
             "Each claim is judged on this sweep's runs. Effect: the mean difference in F1 points in the claimed "
             "direction (positive = as the paper says), with its 95% Student-t interval; runs are paired by seed "
             "and cell (same window, scenario, ...) where the design allows, Welch's comparison of means otherwise. "
             "**supported**: the interval lies entirely above 0; **contradicted**: entirely below 0; "
             "**inconclusive**: it contains 0, or no interval can be given (a single pair or run); **untestable**: "
             f"the sweep lacks the runs. {design} Every field, with how each claim was compared: "
             "[claims.csv](claims.csv).", "",
             "| claim | the paper says | effect (F1 points) | 95% interval | n | verdict |",
             "|---|---|--:|--:|--:|---|"]
    for i, c in enumerate(claims):
        interval = "–" if math.isnan(c.ci_low) else f"[{_points(c.ci_low)}, {_points(c.ci_high)}]"
        why = f": {c.reason}" if c.reason else ""
        said = "(as above)" if i and claims[i - 1].statement == c.statement else c.statement
        lines.append(f"| `{c.claim}` | {said} | {_points(c.effect)} | {interval} | {c.n or '–'} | "
                     f"**{c.verdict}**{why} |")
    lines += ["", "How each claim was compared:", ""]
    lines += [f"- `{c.claim}`: {c.comparison}." for c in claims]
    return lines
