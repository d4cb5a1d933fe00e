import pytest

from pipeline.data.synthetic import generate


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A small synthetic dataset in the common on-disk format (generated once per session)."""
    root = tmp_path_factory.mktemp("data") / "synthetic"
    generate(root, n_trainval=16, val_fraction=0.25, n_test=4, height=32, width=32, seed=0)
    return root
