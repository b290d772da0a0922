"""Tiny models for structural tests (no downloads, milliseconds per forward)."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """conv-relu-conv-relu-GAP-linear; ``features`` is the auto target layer."""

    def __init__(self, channels: int = 8, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, stride=2),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.pool(self.features(x)).flatten(1)))


class Boom(Exception):
    pass


class ExplodingCNN(TinyCNN):
    """Raises inside forward after the target layer ran."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.features(x)
        raise Boom("exploded inside the model")


class TinyViT(nn.Module):
    """Patch embedding + one transformer block over a class token and a 4x4 grid."""

    def __init__(self, dim: int = 16, classes: int = 5) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 8, stride=8)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.block = nn.TransformerEncoderLayer(dim, 2, 32, batch_first=True, dropout=0.0)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], dim=1)
        t = self.norm(self.block(t))
        return self.head(t[:, 0])


class SharedActivation(nn.Module):
    """One ReLU module called three times; the last call's output is the feature map."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 6, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.c1(x))
        x = self.act(self.c2(x))
        return self.fc(self.act(x.mean((2, 3))))


class StemHeadShared(nn.Module):
    """One ReLU module after the stem and at the head, as EfficientNet's ``_swish``.

    ``head_calls`` sets how many times the head applies it (a model whose call count changes
    between forward passes); ``forwards`` counts the forward passes run.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 6, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(6, 3)
        self.head_calls = 1
        self.forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        x = self.head(self.act(self.stem(x)))
        for i in range(self.head_calls):
            x = self.act(x * (i + 1))
        return self.fc(x.mean((2, 3)))
