"""BN scaling factors over training: do ℓ1-penalised γ that fall to ~0 recover?
(Theorem 1, appendix A, Figure 5)

Input: runs/<variant>/seed<k>/gammas.npz (γ of every exchange layer, logged over training) and the
config.json next to it. "Exchange layers" are the BNs where ℓ1 and exchange act, in encoder order.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .results import atomic_write, git_revision, join_values, variant_order
from .tables import markdown

SPARSE_COLOR, REST_COLOR = "tab:red", "tab:blue"
RECOVERY_LIMIT = 0.10
MIN_FELL = 10        # fewer fallen channels than this cannot estimate a fraction
STAT_COLUMNS = ["layer", "modality", "channels", "n_sparse", "n_fell", "n_recovered", "n_back",
                "frac_fell", "frac_recovered", "frac_back"]
RECOVERY_RULE = (
    "For each of the two variants, pool over seeds, exchange layers and modalities the "
    "ℓ1-penalised channels (γ̂) whose |γ| is ≤ θ = {theta} at some logged training step "
    "(\"fell\"); a fallen channel \"recovered\" if |γ| > θ at the last logged step. The claim "
    "\"γ that closes to zero can hardly recover\" (appendix A, Figure 5) is \"reproduced\" if the "
    "recovered fraction (recovered / fell) is below {limit:.0%} for both variants, "
    "\"contradicted\" if it is {limit:.0%} or more for either, \"inconclusive\" if fewer than "
    "{min_fell} channels fell in a variant (too few to estimate a fraction), and \"not run\" if "
    "a variant has no run with ℓ1-penalised channels.")


def load_gammas(path) -> dict:
    """gammas.npz -> {"steps": (T,), "modalities": [M names], "layers": [{"gamma": (T, M, C),
    "sparse": (M, C), "allowed": (M, C)}, ...]} with shapes checked."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        steps = z["steps"].astype(np.int64)
        modalities = [str(m) for m in z["modalities"]]
        layers = []
        for i in range(int(z["n_layers"])):
            gam, sp, al = z[f"gamma_{i}"], z[f"sparse_{i}"], z[f"allowed_{i}"]
            t, m, c = gam.shape
            if t != steps.size or m != len(modalities) or sp.shape != (m, c) or al.shape != (m, c):
                raise ValueError(f"{path}: layer {i} shapes {gam.shape}, {sp.shape}, {al.shape} "
                                 f"do not match {steps.size} steps x {len(modalities)} modalities")
            # γ stays float32: comparing it with a Python θ then happens in float32, as the
            # training-side exchange mask (torch, float32) does, so boundary cases agree.
            layers.append({"gamma": gam, "sparse": sp.astype(bool), "allowed": al.astype(bool)})
    return {"steps": steps, "modalities": modalities, "layers": layers}


def recovery_stats(g: dict, theta: float) -> pd.DataFrame:
    """Per exchange layer and modality, over the ℓ1-penalised channels only:

    n_sparse      how many channels are penalised
    n_fell        how many reach |γ| <= θ at some logged step       frac_fell = n_fell / n_sparse
    n_recovered   of those, how many end training with |γ| > θ     frac_recovered = . / n_fell
    n_back        of those, how many are > θ at any step after
                  their first fall (even if they fall again)        frac_back = . / n_fell
    """
    rows = []
    for i, layer in enumerate(g["layers"]):
        for m, name in enumerate(g["modalities"]):
            a = np.abs(layer["gamma"][:, m, layer["sparse"][m]])          # (T, k)
            below = a <= theta
            fell = below.any(axis=0)
            first = below.argmax(axis=0)                                  # first fall (if any)
            later = np.arange(a.shape[0])[:, None] > first[None, :]
            recovered = fell & (a[-1] > theta)
            back = fell & ((~below) & later).any(axis=0)
            n, nf = int(a.shape[1]), int(fell.sum())
            rows.append({"layer": i, "modality": name, "channels": layer["gamma"].shape[2],
                         "n_sparse": n, "n_fell": nf, "n_recovered": int(recovered.sum()),
                         "n_back": int(back.sum()),
                         "frac_fell": nf / n if n else np.nan,
                         "frac_recovered": recovered.sum() / nf if nf else np.nan,
                         "frac_back": back.sum() / nf if nf else np.nan})
    return pd.DataFrame(rows, columns=STAT_COLUMNS)


def find_runs(runs_dir) -> pd.DataFrame:
    """Every runs/<variant>/seed<k>/gammas.npz with its config: variant, seed, path, config."""
    rows = []
    for path in sorted(Path(runs_dir).glob("*/seed*/gammas.npz")):
        cfg_path = path.with_name("config.json")
        cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        rows.append({"variant": cfg.get("variant", path.parent.parent.name),
                     "seed": int(cfg.get("seed", path.parent.name.removeprefix("seed"))),
                     "path": str(path), "config": cfg})
    if not rows:
        raise FileNotFoundError(f"no gammas: {runs_dir} has no */seed*/gammas.npz")
    df = pd.DataFrame(rows)
    rank = df["variant"].map({v: i for i, v in enumerate(variant_order(df["variant"]))})
    return df.assign(_r=rank).sort_values(["_r", "seed"], ignore_index=True).drop(columns="_r")


def runs_provenance(runs: pd.DataFrame) -> dict:
    """Provenance record (as results.provenance gives) from the runs' config.json files."""
    cfgs = list(runs["config"])
    prov = {k: join_values(c[k] for c in cfgs if k in c)
            for k in ("profile", "dataset", "device")}
    prov["seeds"] = sorted({int(s) for s in runs["seed"]})
    prov["variants"] = variant_order(runs["variant"].unique())
    prov["git"] = git_revision()
    return prov


def recovery_table(runs: pd.DataFrame, theta: float) -> pd.DataFrame:
    """recovery_stats for every run that has ℓ1-penalised channels, tagged by variant and seed."""
    parts = []
    for r in runs.itertuples():
        g = load_gammas(r.path)
        if not any(layer["sparse"].any() for layer in g["layers"]):
            continue   # no ℓ1 in this variant: nothing can "fall" under the penalty
        parts.append(recovery_stats(g, theta).assign(variant=r.variant, seed=r.seed))
    cols = ["variant", "seed", *STAT_COLUMNS]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def pooled_recovery(rec: pd.DataFrame) -> pd.DataFrame:
    """Counts summed per variant over seeds, layers and modalities; fractions of the sums."""
    agg = rec.groupby("variant", sort=False).agg(
        seeds=("seed", lambda s: ", ".join(map(str, sorted(set(s))))),
        n_sparse=("n_sparse", "sum"), n_fell=("n_fell", "sum"),
        n_recovered=("n_recovered", "sum"), n_back=("n_back", "sum")).reset_index()
    nf = agg["n_fell"].where(agg["n_fell"] > 0)
    agg["frac_fell"] = agg["n_fell"] / agg["n_sparse"].where(agg["n_sparse"] > 0)
    agg["frac_recovered"] = agg["n_recovered"] / nf
    agg["frac_back"] = agg["n_back"] / nf
    return agg


def theorem1_verdict(pooled: pd.DataFrame, variants, limit: float = RECOVERY_LIMIT,
                     min_fell: int = MIN_FELL) -> str:
    """RECOVERY_RULE applied to the pooled rows of `variants` (with and without exchange)."""
    rows = pooled.set_index("variant")
    if any(v not in rows.index for v in variants):
        return "not run"
    sel = rows.loc[list(variants)]
    if (sel["n_fell"] < min_fell).any():
        return "inconclusive"
    if (sel["frac_recovered"] >= limit).any():
        return "contradicted"
    return "reproduced"


def paper_layer(g: dict) -> int:
    """The exchange layer at the position of the paper's Figure 5 layer.

    The paper plots "the 8th layer of convolutional layers that have 3x3 kernels" of ResNet101,
    256 channels: ResNet101 has 3 + 4 bottlenecks in its first two stages, so the 8th 3x3 conv is
    the first bottleneck of the third stage. Our exchange layers are exactly the 3x3-conv BNs of
    the bottlenecks, and widths double per stage, so that position is the first layer with 4x the
    first layer's channels, whatever the depth/width of the profile. Falls back to the middle
    layer if no layer has that width.
    """
    widths = [layer["gamma"].shape[2] for layer in g["layers"]]
    for i, w in enumerate(widths):
        if w == 4 * widths[0]:
            return i
    return len(widths) // 2


def resolve_layer(g: dict, layer: int | None) -> int:
    """None -> paper_layer; negative -> counted from the end; checked against the layer count."""
    n = len(g["layers"])
    i = paper_layer(g) if layer is None else layer + n if layer < 0 else layer
    if not 0 <= i < n:
        raise IndexError(f"layer {layer} out of range: there are {n} exchange layers")
    return i


def figure5(g_with_exchange: dict, g_without_exchange: dict, layer: int | None, theta: float,
            modality: int = 0, titles=("with channel exchanging", "without channel exchanging")
            ) -> Figure:
    """The paper's Figure 5: |γ| of every channel of one modality at one exchange layer vs
    training step, ℓ1-penalised channels and the rest in two colours, θ dashed; two panels."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, g, title in zip(axes, (g_with_exchange, g_without_exchange), titles):
        i = resolve_layer(g, layer)
        a = np.abs(g["layers"][i]["gamma"][:, modality, :])             # (T, C)
        sparse = g["layers"][i]["sparse"][modality]
        steps = g["steps"]
        # Unpenalised first so the penalised channels (the subject) are drawn on top.
        if (~sparse).any():
            ax.plot(steps, a[:, ~sparse], color=REST_COLOR, lw=0.7, alpha=0.5)
        if sparse.any():
            ax.plot(steps, a[:, sparse], color=SPARSE_COLOR, lw=0.7, alpha=0.5)
        ax.axhline(theta, color="black", ls="--", lw=1.2)
        ax.set_title(f"{title}\nlayer {i}, {g['modalities'][modality]}, {a.shape[1]} channels")
        ax.set_xlabel("training step")
        ax.legend(handles=[
            Line2D([], [], color=SPARSE_COLOR, label=f"ℓ1-penalised γ̂ ({int(sparse.sum())})"),
            Line2D([], [], color=REST_COLOR, label=f"not penalised ({int((~sparse).sum())})"),
            Line2D([], [], color="black", ls="--", label=f"θ = {theta:g}")], loc="upper right")
    axes[0].set_ylabel("|γ| (BN scaling factor)")
    return fig


def save_figure(fig: Figure, stem) -> None:
    """<stem>.png and <stem>.svg, atomically and byte-stable (no dates/versions, fixed SVG ids)."""
    for fmt, metadata in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
        buf = io.BytesIO()
        with matplotlib.rc_context({"svg.hashsalt": "cen-repro"}):
            fig.savefig(buf, format=fmt, dpi=150, metadata=metadata)
        atomic_write(f"{stem}.{fmt}", buf.getvalue())


def recovery_markdown(rec: pd.DataFrame, pooled: pd.DataFrame, verdict: str, theta: float,
                      variants) -> str:
    """Rule, verdict with the numbers it rests on, pooled table and per-layer table."""
    def pct(k, n):
        return f"{k / n:.1%} ({k}/{n})" if n else "– (0/0)"

    idx = pooled.set_index("variant")
    basis = "; ".join(
        f"{v}: recovered {pct(idx.at[v, 'n_recovered'], idx.at[v, 'n_fell'])} of fallen, "
        f"fell {pct(idx.at[v, 'n_fell'], idx.at[v, 'n_sparse'])} of penalised"
        if v in idx.index else f"{v}: no run with ℓ1-penalised channels" for v in variants)
    show = pooled.assign(**{c: pooled[c].map(lambda x: "–" if pd.isna(x) else f"{x:.1%}")
                            for c in ("frac_fell", "frac_recovered", "frac_back")})
    by_layer = (rec.groupby(["variant", "layer"], sort=False)
                [["n_sparse", "n_fell", "n_recovered", "n_back"]].sum().reset_index())
    return "\n".join([
        "## Rule", "", RECOVERY_RULE.format(theta=theta, limit=RECOVERY_LIMIT, min_fell=MIN_FELL), "",
        "\"back\" (reported, not used by the rule): a fallen channel that is > θ at any later "
        "logged step, even if it falls again.", "",
        f"## Verdict: {verdict}", "", f"Compared: {', '.join(variants)}. {basis}.", "",
        "## Pooled over seeds, layers and modalities", "", markdown(show), "",
        "## Per exchange layer (summed over seeds and modalities)", "",
        markdown(by_layer), ""])
