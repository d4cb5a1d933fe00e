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
# # Ablations: Tables 1 and 7, and the claims made about them
#
# Test-split Mean IoU of every trained variant (mean ± std over seeds, percent) next to the
# paper's numbers, then a one-sided Welch test of each claim of §4.1, appendix E and the last
# paragraph of appendix A. All logic lives in `pipeline/report`; this notebook only wires it up.

# %% tags=["parameters"]
results_dir = "results"
out_dir = "reports/ablation"
alpha = 0.05

# %%
from pathlib import Path

from IPython.display import Markdown, display

from pipeline.report import claims, results, tables
from pipeline.report.paper import TABLE1_VARIANTS, TABLE7_VARIANTS

df = results.load_results(results_dir)
header = results.provenance_block(results.provenance(df))
out = Path(out_dir)
display(Markdown(header))

# %% [markdown]
# ## Tables 1 and 7
# "not run" marks a paper row whose variant has no results yet.

# %%
TABLES = {"table1": ("Table 1 (§4.1): test Mean IoU (%)", TABLE1_VARIANTS),
          "table7": ("Table 7 (appendix E): test Mean IoU (%)", TABLE7_VARIANTS)}
for name, (title, variants) in TABLES.items():
    table = tables.ablation_table(df, variants)
    tables.write_table(table, tables.ablation_numbers(df, variants), out / name,
                       preamble=f"{header}# {title}\n\n")
    display(Markdown(f"### {title}"), table)

# %% [markdown]
# ## Claims
# Each claim is one or more contrasts of mean test mIoU that the paper says are positive.

# %%
contrasts = claims.evaluate_claims(df, alpha)
verdicts = claims.claim_verdicts(contrasts)
body = claims.claims_markdown(contrasts, verdicts, alpha)
results.atomic_write(out / "claims.md", f"{header}# Claims about Tables 1 and 7\n\n{body}")
claim_verdict = verdicts[["claim", "verdict"]].rename(columns={"verdict": "claim_verdict"})
tables.write_csv(contrasts.merge(claim_verdict, on="claim"), out / "claims.csv")
display(Markdown(body))
