"""The paper's claims about Tables 1 and 7, as contrasts of mean test mIoU, and their verdicts.

Each claim is a list of contrasts Σ c·mean(variant, output) that the paper says are > 0.
A contrast is tested with the one-sided Welch test of stats.py over seeds; the verdict rules are the strings
CONTRAST_RULE and CLAIM_RULE, printed verbatim in the report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from .paper import TABLE7, display_name
from .stats import contrast_test
from .tables import markdown

CONTRAST_RULE = (
    "For each contrast, a one-sided Welch test (unequal variances, Welch–Satterthwaite degrees "
    "of freedom) over seeds at level alpha = {alpha}: \"reproduced\" if p < alpha for the "
    "paper's direction (contrast > 0); \"contradicted\" if the opposite one-sided p < alpha "
    "(contrast < 0); otherwise \"inconclusive\"; \"not run\" if a variant it needs has no results.")
CLAIM_RULE = (
    "A claim with several contrasts is \"reproduced\" if all are, \"contradicted\" if any is, "
    "otherwise \"partly reproduced\" when at least one is reproduced, else \"inconclusive\". "
    "A claim is \"not run\" when none of its contrasts could be evaluated; a contrast that was "
    "not run counts as not reproduced.")
# Why groups count as independent even in a difference of differences: (a−b)[depth] and
# (a−b)[rgb] come from the same runs. Ignoring their (typically positive) correlation
# overstates the variance, so the test errs on the side of "inconclusive".
CORRELATION_NOTE = (
    "Differences of differences compare two outputs of the same runs; the test treats them as "
    "independent groups, which ignores their (typically positive) correlation and so errs "
    "towards \"inconclusive\".")


@dataclass(frozen=True)
class Contrast:
    label: str
    terms: tuple[tuple[str, str, float], ...]  # (variant, output, coefficient)

    @property
    def variants(self) -> set[str]:
        return {v for v, _, _ in self.terms}


@dataclass(frozen=True)
class Claim:
    id: str
    source: str
    statement: str
    contrasts: tuple[Contrast, ...]


def diff(a: str, b: str, output: str) -> Contrast:
    """mean(a, output) − mean(b, output) > 0."""
    return Contrast(f"{a} − {b} [{display_name(output)}]", ((a, output, 1.0), (b, output, -1.0)))


def gain_gap(a: str, b: str, more: str, less: str) -> Contrast:
    """(a − b)[more] − (a − b)[less] > 0: the gain of a over b is larger on `more`."""
    label = f"({a} − {b}) [{display_name(more)}] − ({a} − {b}) [{display_name(less)}]"
    return Contrast(label, ((a, more, 1.0), (b, more, -1.0), (a, less, -1.0), (b, less, 1.0)))


EACH = ("rgb", "depth", "ensemble")

CLAIMS = (
    Claim("1", "§4.1 obs. 1, Table 1",
          "\"Compared to the unshared baseline, sharing the convolutional parameters greatly "
          "boosts the performance\" (shared convs + private BNs > unshared, every output)",
          tuple(diff("shared_conv", "unshared", o) for o in EACH)),
    Claim("1b", "§4.1 obs. 1, Table 1",
          "\"... particularly on the Depth modality (35.8 vs 38.4)\": the gain from sharing "
          "convs is largest on Depth",
          (gain_gap("shared_conv", "unshared", "depth", "rgb"),
           gain_gap("shared_conv", "unshared", "depth", "ensemble"))),
    Claim("2", "§4.1 obs. 1, Table 1",
          "\"the performance will encounter a clear drop if we additionally share the BN "
          "layers\" (shared BNs < private BNs with shared convs, every output)",
          tuple(diff("shared_conv", "shared_bn", o) for o in EACH)),
    Claim("3", "§4.1 obs. 2, Table 1",
          "\"After carrying out directed channel exchanging under the ℓ1 regulation, our model "
          "gains a huge improvement on both modalities\" and the ensemble (CEN > shared convs "
          "with half-channel ℓ1 and no exchange, every output)",
          tuple(diff("cen", "shared_l1half", o) for o in EACH)),
    Claim("3b", "§4.1 obs. 2, Table 1",
          "The exchange gain is largest on Depth (\"from 46.0 to 49.7 on RGB, and from 38.1 to "
          "45.1 on Depth\")",
          (gain_gap("cen", "shared_l1half", "depth", "rgb"),
           gain_gap("cen", "shared_l1half", "depth", "ensemble"))),
    Claim("4", "§4.1 obs. 3, Table 1",
          "\"When we remove this constraint and allow all channels to be exchanged ..., the "
          "accuracy decreases\" (half-channel > all-channel, shared convs with exchange, every "
          "output)",
          tuple(diff("cen", "shared_l1all_ex", o) for o in EACH)),
    Claim("5", "Appendix E, Table 7 caption",
          "\"sharing convs (with unshared BNs) results in better performance for our method\" "
          "(with exchange, shared > unshared convs; Ensemble)",
          (diff("cen", "unshared_l1half_ex", "ensemble"),
           diff("shared_l1all_ex", "unshared_l1all_ex", "ensemble"))),
    Claim("6", "Appendix E, Table 7",
          "\"our method is generally useful and channels are aligned to some extent even under "
          "the unshared setting\" (exchange helps with unshared convs; Ensemble)",
          (diff("unshared_l1half_ex", "unshared_l1half", "ensemble"),
           diff("unshared_l1all_ex", "unshared_l1all", "ensemble"))),
    Claim("7", "Appendix A, last paragraph",
          "Corollary 1 \"is consistent with Table 7 in the unshared scenario (full-channel: 49.1 "
          "vs half-channel: 48.5)\" (unshared convs: all-channel exchange > half-channel; "
          "Ensemble)",
          (diff("unshared_l1all_ex", "unshared_l1half_ex", "ensemble"),)),
)


def paper_estimate(contrast: Contrast) -> float:
    """The contrast on the paper's own Table 7 numbers (mIoU points)."""
    # Inputs have one decimal, so 2 decimals removes float noise (46.2-45.5 = 0.7000000000000028).
    return round(sum(c * TABLE7[v][o] for v, o, c in contrast.terms), 2)


def _verdict(p: float, p_opposite: float, alpha: float) -> str:
    if p < alpha:
        return "reproduced"
    if p_opposite < alpha:
        return "contradicted"
    return "inconclusive"   # includes NaN p (fewer than 2 seeds): NaN < alpha is False


def evaluate_claims(df: pd.DataFrame, alpha: float = 0.05, split: str = "test",
                    metric: str = "miou", claims=CLAIMS) -> pd.DataFrame:
    """One row per contrast: estimate and se in mIoU points, Welch df/t/p, paper value, verdict."""
    sel = df[(df["split"] == split) & (df["metric"] == metric)]
    samples = {k: g.sort_values("seed")["value"].to_numpy() * 100.0   # fractions -> points
               for k, g in sel.groupby(["variant", "output"])}
    rows = []
    for claim in claims:
        for con in claim.contrasts:
            row = {"claim": claim.id, "source": claim.source, "statement": claim.statement,
                   "contrast": con.label, "paper_estimate": paper_estimate(con)}
            missing = [(v, o) for v, o, _ in con.terms if (v, o) not in samples]
            if missing:
                row.update(estimate=math.nan, se=math.nan, df=math.nan, t=math.nan, p=math.nan,
                           p_opposite=math.nan, n="", verdict="not run")
            else:
                r = contrast_test([(samples[(v, o)], c) for v, o, c in con.terms])
                row.update(estimate=r.estimate, se=r.se, df=r.df, t=r.t, p=r.p,
                           p_opposite=r.p_opposite,
                           n="/".join(str(len(samples[(v, o)])) for v, o, _ in con.terms),
                           verdict=_verdict(r.p, r.p_opposite, alpha))
            rows.append(row)
    cols = ["claim", "source", "statement", "contrast", "n", "estimate", "se", "df", "t", "p",
            "p_opposite", "paper_estimate", "verdict"]
    return pd.DataFrame(rows, columns=cols)


def combine(verdicts) -> str:
    """CLAIM_RULE applied to the contrast verdicts of one claim."""
    verdicts = list(verdicts)
    if all(v == "not run" for v in verdicts):
        return "not run"
    if all(v == "reproduced" for v in verdicts):
        return "reproduced"
    if "contradicted" in verdicts:
        return "contradicted"
    if "reproduced" in verdicts:
        return "partly reproduced"
    return "inconclusive"


def claim_verdicts(contrasts: pd.DataFrame) -> pd.DataFrame:
    """One row per claim (in claim order) from the output of evaluate_claims."""
    rows = []
    for cid, g in contrasts.groupby("claim", sort=False):
        v = g["verdict"]
        rows.append({"claim": cid, "source": g["source"].iloc[0],
                     "statement": g["statement"].iloc[0], "contrasts": len(g),
                     "reproduced": int((v == "reproduced").sum()),
                     "contradicted": int((v == "contradicted").sum()),
                     "not_run": int((v == "not run").sum()),
                     "paper_holds": bool((g["paper_estimate"] > 0).all()),
                     "verdict": combine(v)})
    return pd.DataFrame(rows)


def claims_markdown(contrasts: pd.DataFrame, verdicts: pd.DataFrame, alpha: float) -> str:
    """Rules, per-claim verdicts and per-contrast numbers as one markdown document body."""
    per_claim = pd.DataFrame({
        "Claim": verdicts["claim"], "Source": verdicts["source"],
        "Paper's statement": verdicts["statement"],
        "Holds in paper": verdicts["paper_holds"].map({True: "yes", False: "NO"}),
        "Reproduced": [f"{r}/{n}" for r, n in zip(verdicts["reproduced"], verdicts["contrasts"])],
        "Verdict": verdicts["verdict"]})
    per_contrast = pd.DataFrame({
        "Claim": contrasts["claim"], "Contrast (> 0 claimed)": contrasts["contrast"],
        "Seeds": contrasts["n"],
        "Ours (mIoU points)": [_pm(e, s) for e, s in zip(contrasts["estimate"], contrasts["se"])],
        "df": [_num(x, 1) for x in contrasts["df"]],
        "p": [_p(x) for x in contrasts["p"]],
        "p (opposite)": [_p(x) for x in contrasts["p_opposite"]],
        "Paper": [f"{x:+.1f}" for x in contrasts["paper_estimate"]],
        "Verdict": contrasts["verdict"]})
    return "\n".join([
        "## Rule", "", CONTRAST_RULE.format(alpha=alpha), "", CLAIM_RULE, "", CORRELATION_NOTE,
        "", "Metric: test-split Mean IoU, in points (percent); \"Ours\" is estimate ± standard "
        "error over seeds; \"Paper\" is the same contrast on the paper's Table 7 numbers.", "",
        "## Verdict per claim", "", markdown(per_claim), "",
        "## Verdict per contrast", "", markdown(per_contrast), ""])


def _num(x: float, digits: int) -> str:
    return "–" if math.isnan(x) else f"{x:.{digits}f}"


def _p(x: float) -> str:
    return "–" if math.isnan(x) else "<0.0001" if x < 1e-4 else f"{x:.4f}"


def _pm(est: float, se: float) -> str:
    if math.isnan(est):
        return "–"
    return f"{est:+.2f}" + ("" if math.isnan(se) else f" ± {se:.2f}")
