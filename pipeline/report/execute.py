"""Execute a report notebook: jupytext script reports/<name>.py -> papermill -> reports/executed/.

The executed notebook is a DVC output (it changes every run: timestamps); the tables and
figures the notebook writes are what users read.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# Folders each notebook reads and writes (fixed layout; the values users tune come from params).
LAYOUT = {
    "ablation": {"results_dir": "results", "out_dir": "reports/ablation"},
    "gamma": {"runs_dir": "runs", "out_dir": "reports/gamma"},
}


def execute_notebook(name: str, params: dict, root: str | Path = ".") -> Path:
    import jupytext
    import papermill

    root = Path(root).resolve()
    source = root / "reports" / f"{name}.py"
    executed = root / "reports" / "executed" / f"{name}.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    # The kernel must be this interpreter (the project's venv), whatever PATH says.
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    with tempfile.TemporaryDirectory(dir=executed.parent) as tmp:
        src = Path(tmp) / f"{name}.ipynb"
        jupytext.write(nb, src)
        out = Path(tmp) / "executed.ipynb"
        papermill.execute_notebook(str(src), str(out), parameters={**LAYOUT[name], **params},
                                   kernel_name="python3", cwd=str(root), progress_bar=False)
        os.replace(out, executed)
    return executed
