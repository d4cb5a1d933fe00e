"""DVC stage: execute one report notebook (a jupytext script in reports/) with papermill."""
import argparse

from pipeline.config import load_params, report_settings
from pipeline.report.execute import execute_notebook

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--notebook", required=True, choices=["ablation", "gamma"])
    args = ap.parse_args()
    params = report_settings(load_params(), args.notebook)
    execute_notebook(args.notebook, params)
