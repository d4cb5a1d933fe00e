"""Tables 1 and 7 as the paper lays them out, reproduced mean ± std next to the paper's number."""
from __future__ import annotations

import math

import pandas as pd

from .paper import FACTOR_COLUMNS, FACTORS, OUTPUTS, TABLE7, display_name, factor_labels
from .results import ResultsError, atomic_write, summarize


def _factors(df: pd.DataFrame, variant: str) -> dict:
    """The factors a variant was trained with; they must be the ones its paper row names."""
    expected = FACTORS.get(variant)
    ran = df.attrs.get("runs", {}).get(variant, {}).get("factors")
    if ran is not None and expected is not None and ran != expected:
        raise ResultsError(f"variant {variant!r} ran with factors {ran}, but its paper row is "
                           f"{expected}")
    if expected is None and ran is None:
        raise ResultsError(f"variant {variant!r} has no factors (not a paper row, not in results)")
    return expected if expected is not None else ran


def ablation_numbers(df: pd.DataFrame, variants, split: str = "test",
                     metric: str = "miou") -> pd.DataFrame:
    """Long numeric table: variant, conv, bn, l1, exchange, output, mean, std, n, paper (percent).

    Variants without results keep their rows (mean/std NaN, n = 0), so a partial run renders.
    """
    summ = summarize(df, split, metric).set_index(["variant", "output"])
    rows = []
    for v in variants:
        f = _factors(df, v)
        for o in OUTPUTS:
            s = summ.loc[(v, o)] if (v, o) in summ.index else None
            rows.append({"variant": v, **f, "output": o,
                         "mean": math.nan if s is None else 100.0 * s["mean"],
                         "std": math.nan if s is None else 100.0 * s["std"],
                         "n": 0 if s is None else int(s["n"]),
                         "paper": TABLE7.get(v, {}).get(o, math.nan)})
    return pd.DataFrame(rows)


def _cell(mean: float, std: float, n: int) -> str:
    if n == 0:
        return "not run"
    if math.isnan(std):        # one seed: no spread to show
        return f"{mean:.1f} (n={n})"
    return f"{mean:.1f} ± {std:.1f} (n={n})"


def ablation_table(df: pd.DataFrame, variants, split: str = "test",
                   metric: str = "miou") -> pd.DataFrame:
    """Display table indexed by variant: the four factor columns, then per output
    "<Output>" (ours, percent, one decimal) and "<Output> (paper)"."""
    nums = ablation_numbers(df, variants, split, metric)
    rows = []
    for v, g in nums.groupby("variant", sort=False):
        first = g.iloc[0]
        row = {"variant": v, **factor_labels({k: first[k] for k in FACTOR_COLUMNS})}
        for _, r in g.iterrows():
            name = display_name(r["output"])
            row[name] = _cell(r["mean"], r["std"], r["n"])
            row[f"{name} (paper)"] = "–" if math.isnan(r["paper"]) else f"{r['paper']:.1f}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")


def write_table(table_df: pd.DataFrame, numeric_df: pd.DataFrame, path_stem,
                preamble: str = "") -> None:
    """<stem>.md (preamble + markdown table) and <stem>.csv (numbers), atomically."""
    atomic_write(f"{path_stem}.md", preamble + markdown(table_df, index=True) + "\n")
    write_csv(numeric_df, f"{path_stem}.csv")


def write_csv(df: pd.DataFrame, path) -> None:
    """Fixed float format and line ends, so the same inputs give the same bytes."""
    atomic_write(path, df.to_csv(index=False, float_format="%.6g", lineterminator="\n"))


def markdown(df: pd.DataFrame, index: bool = False) -> str:
    """Markdown table that prints cells exactly as given ("48.0" stays "48.0", not "48")."""
    return df.to_markdown(index=index, disable_numparse=True)
