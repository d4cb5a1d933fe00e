# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # BN scaling factors over training (Figure 5, Theorem 1)
#
# The paper's appendix A claims that an ℓ1-penalised γ that falls close to zero "can hardly
# recover", with or without channel exchanging. We redraw Figure 5 for one seed and count, for
# every run with ℓ1, how many fallen channels end training above θ again.

# %% tags=["parameters"]
runs_dir = "runs"
out_dir = "reports/gamma"
theta = 0.02
# None = the position of the paper's Figure 5 layer (first 3x3-conv BN of the third ResNet
# stage; see pipeline.report.gamma.paper_layer). An int picks an exchange layer, negative from
# the end.
layer = None
seed = 0
with_exchange = "cen"
without_exchange = "shared_l1half"

# %%
from pathlib import Path

from IPython.display import Image, Markdown, display

from pipeline.report import gamma, results, tables

runs = gamma.find_runs(runs_dir)
header = results.provenance_block(gamma.runs_provenance(runs))
out = Path(out_dir)
display(Markdown(header))
trained = sorted({c["theta"] for c in runs["config"] if c.get("theta") is not None})
if trained and trained != [theta]:
    print(f"WARNING: theta = {theta} here, but training used theta = {trained}")

# %% [markdown]
# ## Figure 5

# %%
def run_of(variant):
    hit = runs[(runs["variant"] == variant) & (runs["seed"] == seed)]
    return gamma.load_gammas(hit["path"].iloc[0]) if len(hit) else None


g_with, g_without = run_of(with_exchange), run_of(without_exchange)
if g_with is None or g_without is None:
    print(f"Figure 5 not drawn: need seed {seed} of both {with_exchange} and {without_exchange}")
else:
    fig = gamma.figure5(g_with, g_without, layer, theta, titles=(
        f"with channel exchanging ({with_exchange}, seed {seed})",
        f"without channel exchanging ({without_exchange}, seed {seed})"))
    gamma.save_figure(fig, out / "figure5")
    display(Image(filename=str(out / "figure5.png")))

# %% [markdown]
# ## Do fallen γ recover?

# %%
rec = gamma.recovery_table(runs, theta)
pooled = gamma.pooled_recovery(rec)
variants = [with_exchange, without_exchange]
verdict = gamma.theorem1_verdict(pooled, variants)
body = gamma.recovery_markdown(rec, pooled, verdict, theta, variants)
results.atomic_write(out / "recovery.md", f"{header}# Recovery of ℓ1-penalised γ\n\n{body}")
tables.write_csv(rec, out / "recovery.csv")
display(Markdown(body))
