"""Shared fixtures: tiny in-repo models, paths to the bundled samples and the dev data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# EIGENCAM_TEST_THREADS=1 on a machine shared with other jobs: OpenMP threads that contend for
# busy cores can make convolutions 50x slower.
torch.set_num_threads(
    int(os.environ.get("EIGENCAM_TEST_THREADS", max(1, min(2, os.cpu_count() or 1))))
)

REPO = Path(__file__).resolve().parents[1]
DEV_DATA = Path(
    os.environ.get("EIGENCAM_DEV_DATA", REPO.parent / "shared" / "data" / "imagenet-val-dev")
)


def dev_data_or_skip() -> Path:
    """The ILSVRC dev images folder, or skip the test with the reason."""
    if not (DEV_DATA / "annotations.json").is_file():
        pytest.skip(
            f"ILSVRC dev data not found at {DEV_DATA} (needs ../shared beside the checkout, "
            "or EIGENCAM_DEV_DATA)"
        )
    return DEV_DATA


@pytest.fixture(scope="session")
def embedded():
    """The embedded EfficientNet-Lite0 with its shipped ImageNet weights (built once)."""
    from eigencam.models import load_model

    return load_model()


@pytest.fixture(scope="session")
def sample_images():
    from eigencam.samples import sample_paths

    return sample_paths()
