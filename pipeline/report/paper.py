"""The paper's reference numbers for the ablations (what we compare against, never what we report).

Source: Wang et al., "Deep Multimodal Fusion by Channel Exchanging", NeurIPS 2020,
Table 7 (appendix E; rows 1-11) and Table 1 (§4.1; a six-row subset with identical numbers).
NYUDv2, RefineNet (ResNet101), single-scale test, Mean IoU in percent.
"""
from __future__ import annotations

OUTPUTS = ("rgb", "depth", "ensemble")  # the columns of Tables 1 and 7

# Factors in the encoding used by results/*.json ("private" = the paper's "Unshared" BNs).
FACTORS = {
    "unshared":           {"conv": "unshared", "bn": "private", "l1": "none", "exchange": False},
    "shared_bn":          {"conv": "shared",   "bn": "shared",  "l1": "none", "exchange": False},
    "shared_conv":        {"conv": "shared",   "bn": "private", "l1": "none", "exchange": False},
    "unshared_l1half":    {"conv": "unshared", "bn": "private", "l1": "half", "exchange": False},
    "unshared_l1half_ex": {"conv": "unshared", "bn": "private", "l1": "half", "exchange": True},
    "shared_l1half":      {"conv": "shared",   "bn": "private", "l1": "half", "exchange": False},
    "cen":                {"conv": "shared",   "bn": "private", "l1": "half", "exchange": True},
    "unshared_l1all":     {"conv": "unshared", "bn": "private", "l1": "all",  "exchange": False},
    "unshared_l1all_ex":  {"conv": "unshared", "bn": "private", "l1": "all",  "exchange": True},
    "shared_l1all":       {"conv": "shared",   "bn": "private", "l1": "all",  "exchange": False},
    "shared_l1all_ex":    {"conv": "shared",   "bn": "private", "l1": "all",  "exchange": True},
}

# Table 7, Mean IoU (%), keyed by variant then output.
TABLE7 = {
    "unshared":           {"rgb": 45.5, "depth": 35.8, "ensemble": 47.6},
    "shared_bn":          {"rgb": 43.7, "depth": 35.5, "ensemble": 45.2},
    "shared_conv":        {"rgb": 46.2, "depth": 38.4, "ensemble": 48.0},
    "unshared_l1half":    {"rgb": 45.1, "depth": 35.5, "ensemble": 47.3},
    "unshared_l1half_ex": {"rgb": 46.5, "depth": 41.6, "ensemble": 48.5},
    "shared_l1half":      {"rgb": 46.0, "depth": 38.1, "ensemble": 47.7},
    "cen":                {"rgb": 49.7, "depth": 45.1, "ensemble": 51.1},
    "unshared_l1all":     {"rgb": 44.6, "depth": 35.3, "ensemble": 46.6},
    "unshared_l1all_ex":  {"rgb": 46.8, "depth": 41.7, "ensemble": 49.1},
    "shared_l1all":       {"rgb": 46.1, "depth": 37.9, "ensemble": 47.5},
    "shared_l1all_ex":    {"rgb": 48.6, "depth": 39.0, "ensemble": 49.8},
}
TABLE7_VARIANTS = tuple(TABLE7)  # dicts keep insertion order: this is the paper's row order
TABLE1_VARIANTS = ("unshared", "shared_bn", "shared_conv", "shared_l1half", "cen",
                   "shared_l1all_ex")

# How the paper prints each factor (column headers of Tables 1/7, then value labels).
FACTOR_COLUMNS = {"conv": "Convs", "bn": "BNs", "l1": "ℓ1 Regulation", "exchange": "Exchange"}
FACTOR_LABELS = {
    "conv": {"shared": "Shared", "unshared": "Unshared"},
    "bn": {"shared": "Shared", "private": "Unshared"},
    "l1": {"none": "×", "half": "Half-channel", "all": "All-channel"},
    "exchange": {True: "✓", False: "×"},
}
_OUTPUT_NAMES = {"rgb": "RGB", "depth": "Depth", "ensemble": "Ensemble"}


def display_name(output: str) -> str:
    """rgb -> RGB, depth -> Depth, ensemble -> Ensemble, any other modality capitalised."""
    return _OUTPUT_NAMES.get(output, output.capitalize())


def factor_labels(factors: dict) -> dict:
    """{"conv": "shared", ...} -> {"Convs": "Shared", ...} as printed in the paper."""
    return {FACTOR_COLUMNS[k]: FACTOR_LABELS[k][factors[k]] for k in FACTOR_COLUMNS}
