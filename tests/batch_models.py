"""Model factories for the batch tests, loaded by file path (``tests/batch_models.py:tiny``).

Self-contained (no import of the test package) because Ray workers and subprocesses load the
file on their own. Weights are seeded, so every process builds the same model.
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn


class TinyNet(nn.Module):
    """conv-relu-conv-relu-GAP-linear over 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, stride=2),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class SlowNet(TinyNet):
    """TinyNet that sleeps ``EIGENCAM_TEST_SLEEP`` seconds (default 0.4) per forward pass."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(float(os.environ.get("EIGENCAM_TEST_SLEEP", "0.4")))
        return super().forward(x)


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet()


def slow() -> nn.Module:
    torch.manual_seed(0)
    return SlowNet()
