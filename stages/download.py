"""DVC stage: fetch (or verify a hand-placed copy of) one artefact of pipeline/data/sources.py."""
import argparse
import sys

from pipeline.config import download_settings, load_params
from pipeline.data.download import DownloadError, fetch
from pipeline.data.sources import get_artefact

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--artefact", required=True)
    args = ap.parse_args()
    settings = download_settings(load_params(), args.artefact)   # validates before any work
    artefact = get_artefact(args.artefact)
    try:
        path = fetch(artefact, mirror=settings["mirror"], retries=settings["retries"],
                     timeout_s=settings["timeout_s"])
    except DownloadError as e:
        sys.exit(f"error: {e}")
    print(f"{path}: verified")
