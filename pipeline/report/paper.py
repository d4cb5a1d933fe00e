"""The paper's reference numbers for the ablations (what we compare against, never what we report).

Source: Wang et al., "Deep Multimodal Fusion by Channel Exchanging", NeurIPS 2020,
Table 7 (appendix E; rows 1-11) and Table 1 (§4.1; a six-row subset with identical numbers).
NYUDv2, RefineNet (ResNet101), single-scale test, Mean IoU in percent.
"""
from __future__ import annotations

from ..models import registry as _registry

OUTPUTS = ("rgb", "depth", "ensemble")  # the columns of Tables 1 and 7

# Variants, their factors (as results/*.json encodes them: "private" = the paper's "Unshared"
# BNs) and the paper's row order come from the registry: one definition for training and reports.
FACTORS = {v.name: v.factors() for v in _registry.TABLE7}

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
TABLE7_VARIANTS = tuple(v.name for v in _registry.TABLE7)   # the paper's row order
TABLE1_VARIANTS = tuple(_registry.TABLE1)
assert set(TABLE7) == set(TABLE7_VARIANTS), "paper numbers and registry disagree"

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
