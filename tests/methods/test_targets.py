"""Resolving class targets for class-specific methods."""

from __future__ import annotations

import pytest
import torch

from eigencam.errors import TargetError
from eigencam.methods.targets import resolve_targets

LOGITS = torch.tensor([[0.1, 3.0, 2.0, -1.0], [5.0, 0.0, 1.0, 4.0]])


def test_predicted_and_topk():
    assert resolve_targets(None, LOGITS, 2).indices.tolist() == [[1], [0]]
    assert resolve_targets("predicted", LOGITS, 2).indices.tolist() == [[1], [0]]
    assert resolve_targets("top2", LOGITS, 2).indices.tolist() == [[1, 2], [0, 3]]


def test_explicit_indices():
    assert resolve_targets(3, LOGITS, 2).indices.tolist() == [[3], [3]]
    assert resolve_targets([2, 1], LOGITS, 2).indices.tolist() == [[2], [1]]
    assert resolve_targets([[2, 0], [1, 3]], LOGITS, 2).indices.tolist() == [[2, 0], [1, 3]]
    t = resolve_targets(torch.tensor([0, 2]), LOGITS, 2)
    torch.testing.assert_close(t.scores(LOGITS), torch.tensor([[0.1], [1.0]]))


def test_callable_targets():
    t = resolve_targets(lambda out: out[:, 0] - out[:, 1], LOGITS, 2)
    assert t.indices is None
    torch.testing.assert_close(t.scores(LOGITS), torch.tensor([[-2.9], [5.0]]))
    with pytest.raises(TargetError, match="one score per image"):
        resolve_targets(lambda out: "x", LOGITS, 2).scores(LOGITS)


@pytest.mark.parametrize(
    "spec,match",
    [
        (7, r"\[0, 3\]"),
        ([1, 2, 3], "one class per image"),
        ("top9", "only 4 classes"),
        ("best", "not understood"),
        ([0.5, 1.0], "integers"),
        (True, "bool"),
    ],
)
def test_bad_targets(spec, match):
    with pytest.raises(TargetError, match=match):
        resolve_targets(spec, LOGITS, 2)


def test_non_logit_output_needs_a_callable():
    with pytest.raises(TargetError, match="callable"):
        resolve_targets(None, {"boxes": torch.zeros(1, 4)}, 1)
