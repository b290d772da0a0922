"""Visualisation: colormaps, overlays, captions, figure grids (kept apart from the maths)."""

from eigencam.viz.overlay import add_caption, colorize, colormap_lut, draw_boxes, overlay

__all__ = ["add_caption", "colorize", "colormap_lut", "draw_boxes", "overlay"]
