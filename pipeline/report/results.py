"""Read results/<variant>.json into one long table, summarise it over seeds, say where it came
from (provenance), and write report files atomically."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd

from ..io import write_data as atomic_write  # noqa: F401  (re-exported for notebooks)
from .paper import TABLE7_VARIANTS

COLUMNS = ["variant", "seed", "split", "output", "metric", "value"]
_PROVENANCE_KEYS = ("profile", "dataset", "device")


class ResultsError(ValueError):
    """A results folder that cannot be reported on; the message is one line saying why."""


def variant_order(names) -> list[str]:
    """Paper (Table 7) row order first, then any other variant alphabetically."""
    names = set(names)
    known = [v for v in TABLE7_VARIANTS if v in names]
    return known + sorted(names - set(known))


def output_order(names) -> list[str]:
    """Modalities (rgb, depth first, as in the paper), then other modalities, ensemble last."""
    names = set(names)
    first = [o for o in ("rgb", "depth") if o in names]
    last = ["ensemble"] if "ensemble" in names else []
    return first + sorted(names - set(first) - set(last)) + last


def _read_one(path: Path) -> tuple[dict, list[tuple]]:
    """One results file -> (its metadata, its long-format rows); ResultsError if malformed."""
    def bad(why: str):
        return ResultsError(f"malformed results file {path}: {why}")

    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"not readable JSON ({e})".replace("\n", " ")) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("variant"), str):
        raise bad("no string 'variant'")
    seeds = doc.get("seeds")
    if not isinstance(seeds, dict) or not seeds:
        raise bad("'seeds' missing or empty")
    rows = []
    for seed, per_seed in seeds.items():
        try:
            seed_int = int(seed)
        except ValueError:
            raise bad(f"seed key {seed!r} is not an integer") from None
        splits = {s: per_seed.get(s) for s in ("val", "test")} if isinstance(per_seed, dict) else {}
        if not any(isinstance(v, dict) for v in splits.values()):
            raise bad(f"seed {seed} has neither 'val' nor 'test'")
        for split, outputs in splits.items():
            if outputs is None:
                continue
            if not isinstance(outputs, dict) or not outputs:
                raise bad(f"seed {seed} {split}: expected {{output: {{metric: value}}}}")
            for output, metrics in outputs.items():
                if not isinstance(metrics, dict) or not metrics:
                    raise bad(f"seed {seed} {split} {output}: expected {{metric: value}}")
                for metric, value in metrics.items():
                    # Fractions only: a percent (e.g. 51.1) slipping in would silently be x100 off.
                    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                    if not ok or not (0.0 <= value <= 1.0):
                        raise bad(f"seed {seed} {split} {output} {metric} = {value!r} "
                                  "is not a fraction in [0, 1]")
                    rows.append((doc["variant"], seed_int, split, output, metric, float(value)))
    meta = {k: doc.get(k) for k in ("variant", "factors", "modalities", *_PROVENANCE_KEYS)}
    meta["seeds"] = sorted(int(s) for s in seeds)
    return meta, rows


def load_results(results_dir) -> pd.DataFrame:
    """All results/*.json as a long table (variant, seed, split, output, metric, value).

    Per-variant metadata (factors, modalities, profile, dataset, device, seeds) rides along in
    df.attrs["runs"] so that provenance(df) works without re-reading the folder.
    """
    results_dir = Path(results_dir)
    paths = sorted(results_dir.glob("*.json"))
    if not paths:
        raise ResultsError(f"no results: {results_dir} has no *.json files")
    runs, rows = {}, []
    for path in paths:
        meta, file_rows = _read_one(path)
        variant = meta["variant"]
        if variant in runs:
            raise ResultsError(f"variant {variant!r} appears in two files in {results_dir}")
        runs[variant] = meta
        rows += file_rows
    df = pd.DataFrame(rows, columns=COLUMNS)
    df = df.sort_values(COLUMNS[:5], kind="stable", ignore_index=True)
    df.attrs["runs"] = runs
    return df


def summarize(df: pd.DataFrame, split: str = "test", metric: str = "miou") -> pd.DataFrame:
    """Mean, sample std (ddof=1; NaN for one seed) and seed count per (variant, output)."""
    sel = df[(df["split"] == split) & (df["metric"] == metric)]
    out = (sel.groupby(["variant", "output"])["value"]
              .agg(mean="mean", std=lambda v: v.std(ddof=1), n="count").reset_index())
    # Paper row order and rgb/depth/ensemble column order, not alphabetical.
    vrank = out["variant"].map({v: i for i, v in enumerate(variant_order(out["variant"]))})
    orank = out["output"].map({o: i for i, o in enumerate(output_order(out["output"]))})
    out = out.assign(_v=vrank, _o=orank).sort_values(["_v", "_o"], ignore_index=True)
    out["n"] = out["n"].astype(int)
    return out.drop(columns=["_v", "_o"])


def git_revision(cwd=None) -> str:
    """Short commit hash of the code, with "-dirty" when tracked files have uncommitted changes."""
    cwd = cwd or Path(__file__).resolve().parent

    def git(*args):
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              check=True, timeout=20).stdout.strip()

    try:
        git("rev-parse", "--is-inside-work-tree")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    try:
        rev = git("rev-parse", "--short", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return "unknown (no commit yet)"
    # Untracked files and what `dvc repro` itself rewrites while it runs (dvc.lock and the
    # committed outputs) do not make the code dirty; any other tracked change does.
    pipeline_outputs = [":(exclude,top)dvc.lock", ":(exclude,top)results",
                        ":(exclude,top)reports/ablation", ":(exclude,top)reports/gamma"]
    try:
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ":/",
                         *pipeline_outputs))
    except (OSError, subprocess.SubprocessError):
        dirty = False
    return rev + ("-dirty" if dirty else "")


def join_values(values) -> str:
    """One value -> itself; several -> all, flagged, so that a mixed report cannot go unnoticed."""
    values = sorted({str(v) for v in values})
    if not values:
        return "unknown"
    return values[0] if len(values) == 1 else ", ".join(values) + " (MIXED)"


def provenance_from_runs(runs: dict) -> dict:
    """{variant: {profile, dataset, device, seeds}} -> one provenance record."""
    prov = {k: join_values(m.get(k) for m in runs.values() if m.get(k) is not None)
            for k in _PROVENANCE_KEYS}
    prov["seeds"] = sorted({int(s) for m in runs.values() for s in m.get("seeds", [])})
    prov["variants"] = variant_order(runs)
    prov["git"] = git_revision()
    return prov


def provenance(source) -> dict:
    """profile, dataset, device, seeds (sorted), variants, git revision of a results folder/df."""
    df = source if isinstance(source, pd.DataFrame) else load_results(source)
    if "runs" not in df.attrs:
        raise ResultsError("this DataFrame has no run metadata; pass the results folder instead")
    return provenance_from_runs(df.attrs["runs"])


def provenance_block(prov: dict) -> str:
    """The markdown block every written report starts with (its title comes after it)."""
    small = (any(p in prov["profile"] for p in ("mini", "smoke"))
             or "synthetic" in prov["dataset"])
    caveat = ("Numbers from the mini/smoke profile on synthetic data are not comparable in "
              "absolute value to the paper's (NYUDv2, RefineNet-ResNet101, 300 epochs); "
              "only the direction of effects is."
              if small else
              "Absolute numbers are comparable to the paper's only as far as the backbone, data "
              "and schedule match it (NYUDv2, RefineNet-ResNet101, single-scale test).")
    lines = ["**Provenance**", "",
              f"- profile: {prov['profile']}",
              f"- dataset: {prov['dataset']}",
              f"- device: {prov['device']}",
              f"- seeds: {', '.join(map(str, prov['seeds'])) or 'none'}",
              f"- git revision: {prov['git']}",
              "", f"> {caveat}", ""]
    return "\n".join(lines) + "\n"
