"""Capture of activations: target layers, one-call hooks, model state, reshape transforms."""

# The public names: each imported as itself (``X as X``, the explicit re-export).
from eigencam.capture.adapters import runner_for as runner_for
from eigencam.capture.families import Family as Family
from eigencam.capture.families import family_of as family_of
from eigencam.capture.hooks import LayerRef as LayerRef
from eigencam.capture.hooks import capture_outputs as capture_outputs
from eigencam.capture.hooks import preserved_state as preserved_state
from eigencam.capture.layers import LayerInfo as LayerInfo
from eigencam.capture.layers import list_layers as list_layers
from eigencam.capture.layers import resolve_named as resolve_named
from eigencam.capture.reshape import FeaturePyramid as FeaturePyramid
from eigencam.capture.reshape import tokens_to_grid as tokens_to_grid
from eigencam.capture.scripted import ScriptedModel as ScriptedModel
from eigencam.capture.tree import first_tensor as first_tensor
from eigencam.capture.tree import map_tensors as map_tensors
