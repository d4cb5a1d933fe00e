"""DVC stage: generate the embedded synthetic RGB-D dataset into data/synthetic."""
from dataclasses import asdict

from pipeline.config import generate_settings, load_params
from pipeline.data.synthetic import generate

if __name__ == "__main__":
    settings = generate_settings(load_params())
    meta = generate("data/synthetic", **asdict(settings), progress=True)
    print(f"data/synthetic: {meta['splits']} at {meta['height']}x{meta['width']}")
