"""One-sided Welch test of a linear contrast of group means (H1: Σ c_i·mean_i > 0).

With two groups and coefficients (+1, -1) this is exactly Welch's unequal-variance t-test
(scipy.stats.ttest_ind(a, b, equal_var=False, alternative="greater")); with more groups it tests
e.g. a difference of differences. Groups are treated as independent samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class ContrastResult:
    estimate: float    # Σ c·mean
    se: float          # sqrt(Σ c²·s²/n)
    df: float          # Welch–Satterthwaite degrees of freedom
    t: float           # estimate / se
    p: float           # P(T > t): evidence that the contrast is > 0
    p_opposite: float  # P(T < t): evidence that the contrast is < 0


def contrast_test(groups) -> ContrastResult:
    """groups: [(samples, coef), ...]. Returns the one-sided test of Σ coef·mean > 0.

    Edge cases, chosen so that a verdict is never stronger than the data:
      - a group with fewer than 2 samples has no variance estimate: se, df, t, p are NaN;
      - se == 0 (every group constant): the contrast is observed without noise, so the test
        degenerates to its sign: p = 0 if estimate > 0, 1 if < 0, and 0.5 both ways if == 0
        (df = inf, t = ±inf or NaN).
    """
    est, scale, var, dof_den, too_small = 0.0, 0.0, 0.0, 0.0, False
    for samples, coef in groups:
        x = np.asarray(samples, dtype=float)
        n = x.size
        if n == 0:
            raise ValueError("contrast_test: empty group")
        est += coef * x.mean()
        scale += abs(coef * x.mean())
        if n < 2:
            too_small = True
            continue
        s2 = 0.0 if np.ptp(x) == 0 else x.var(ddof=1)  # exact 0 for constants, not round-off
        v = coef ** 2 * s2 / n   # this group's share of Var(estimate)
        var += v
        dof_den += v ** 2 / (n - 1)
    est = float(est)
    if too_small:
        nan = math.nan
        return ContrastResult(est, nan, nan, nan, nan, nan)
    se = math.sqrt(var)
    if se == 0.0:
        # Equal constants can leave float round-off (e.g. 0.7-0.5-(0.6-0.4) = 1e-17): call it 0.
        if abs(est) <= 1e-12 * max(scale, 1.0):
            est = 0.0
        p = 0.0 if est > 0 else 1.0 if est < 0 else 0.5
        t = math.copysign(math.inf, est) if est != 0 else math.nan
        return ContrastResult(est, 0.0, math.inf, t, p, 1.0 - p)
    dof = var ** 2 / dof_den
    t = est / se
    return ContrastResult(est, se, dof, t, float(stats.t.sf(t, dof)), float(stats.t.cdf(t, dof)))
