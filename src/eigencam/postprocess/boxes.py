r"""From maps to boxes: quantise, threshold, connected components, bounding boxes, IoU.

The protocol of docs/localization.md ("From a map to a box"): :math:`u = \lfloor 255\, m \rfloor`
of the map normalised at the model's input size; the mask :math:`u > \tau \max u` (strictly
greater, as OpenCV's ``THRESH_BINARY``); one box per 8- (or 4-) connected component, the largest
(most pixels, ties to the first in raster order) for the paper's protocol and MaxBoxAcc, all of
them for MaxBoxAccV2. Boxes are ``[x0, y0, x1, y1]`` in continuous pixel-edge coordinates
(columns c0..c1 and rows r0..r1 give ``[c0, r0, c1 + 1, r1 + 1]``); IoU uses no "+1".

The masks of a map are nested, so they are labelled in bands of consecutive thresholds: one
:func:`scipy.ndimage.label` call per band, on the stack of its masks cropped to the box of the
band's lowest-threshold mask, with a structuring element that never connects two masks of the
stack (about a third of the pixels a full stack would label). A constant map gives no box, IoU 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eigencam.errors import ShapeError, check, check_choice

# Thresholds labelled together, in one volume cropped to the box of the lowest one's mask.
_BAND = 10


def quantize(maps: np.ndarray) -> np.ndarray:
    """(N, H, W) maps in [0, 1] (numpy or torch) -> (N, H, W) uint8 ``floor(255 m)``, values
    clipped to [0, 1] and NaN read as 0."""
    m = maps.detach().to("cpu").float().numpy() if hasattr(maps, "detach") else np.asarray(maps)
    if m.ndim != 3:
        raise ShapeError("maps", "(N, H, W)", tuple(m.shape))
    m = np.nan_to_num(np.clip(m.astype(np.float64, copy=False), 0.0, 1.0), nan=0.0)
    return np.floor(m * 255.0).astype(np.uint8)


def threshold_levels(peaks: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(N, T) int16 levels L, ``floor(tau * peak) + 1``, such that ``u > tau * peak`` is ``u >= L``
    for uint8 maps, from the (N,) peaks and (T,) fractions (float64, as the comparison would be).
    """
    p = np.asarray(peaks, dtype=np.float64)[:, None]
    t = np.asarray(thresholds, dtype=np.float64)[None, :]
    return (np.floor(t * p) + 1).astype(np.int16)


@dataclass(frozen=True)
class Components:
    """Every connected component of a stack of masks, flattened.

    Attributes:
        boxes: (L, 4) float64 ``[x0, y0, x1, y1]`` of each component, in map pixels.
        areas: (L,) int64 pixel counts.
        owner: (L,) int64 index of the mask each component belongs to (``n * T + t`` for the
            mask of map n at threshold t).
        largest: (N, T, 4) float64 box of the largest component of each mask, NaN when the mask
            is empty.
        largest_area: (N, T) int64 pixel count of that component, 0 when empty.
    """

    boxes: np.ndarray
    areas: np.ndarray
    owner: np.ndarray
    largest: np.ndarray
    largest_area: np.ndarray


def structure(connectivity: int) -> np.ndarray:
    """The 3-D structuring element that connects pixels within a mask of the stack only."""
    check_choice("connectivity", connectivity, (4, 8))
    st = np.zeros((3, 3, 3), dtype=bool)
    st[1] = True if connectivity == 8 else [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    return st


def connected_components(
    maps_u8: np.ndarray, thresholds: np.ndarray, *, connectivity: int = 8
) -> Components:
    """Boxes of the connected components of ``u > tau * max u`` for every map and threshold.

    Args:
        maps_u8: (N, H, W) uint8 maps (:func:`quantize`).
        thresholds: (T,) threshold fractions tau (any order; 0 keeps every non-zero pixel).
        connectivity: 8 (default, diagonal neighbours connect, as OpenCV's contours) or 4.

    Returns:
        :class:`Components` with every component's box and the largest one per (map, tau).
    """
    from scipy import ndimage

    u = np.asarray(maps_u8)
    if u.ndim != 3:
        raise ShapeError("maps_u8", "(N, H, W)", tuple(u.shape))
    check(u.dtype == np.uint8, f"maps_u8 must be uint8 (use quantize()), got {u.dtype}")
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    check(thr.size > 0, "thresholds must not be empty")
    check(
        bool(np.all(np.isfinite(thr)) and thr.min() >= 0),
        f"thresholds must be finite fractions >= 0, got {thr.tolist()}",
    )
    n = u.shape[0]
    t = thr.size
    st = structure(connectivity)
    order = np.argsort(thr, kind="stable")  # ascending: each mask lies inside the previous one
    levels = threshold_levels(u.reshape(n, -1).max(axis=1) if n else np.zeros(0), thr[order])
    band = max(1, min(_BAND, t))
    empty = np.zeros(0, dtype=np.int64)
    boxes, areas, owners = [np.zeros((0, 4))], [empty], [empty]
    for i in range(n):
        for b0 in range(0, t, band):
            cols = order[b0 : b0 + band]
            # Crop the band's masks to the box of its lowest-threshold mask, which holds them all.
            base = u[i] >= levels[i, b0]
            rows_any = np.flatnonzero(base.any(axis=1))
            if rows_any.size == 0:
                break  # this and every higher threshold: empty
            cols_any = np.flatnonzero(base.any(axis=0))
            r0, r1 = rows_any[0], rows_any[-1] + 1
            c0, c1 = cols_any[0], cols_any[-1] + 1
            sub = u[i, r0:r1, c0:c1]
            masks = sub[None] >= levels[i, b0 : b0 + band, None, None]
            labels = np.empty(masks.shape, dtype=np.int64)
            count = ndimage.label(masks, structure=st, output=labels)
            if count == 0:
                continue
            area = np.bincount(labels.reshape(-1), minlength=count + 1)[1:]
            bounds = np.array(
                [
                    (z.start, x.start, y.start, x.stop, y.stop)
                    for z, y, x in ndimage.find_objects(labels)
                ],
                dtype=np.int64,
            )
            owners.append(i * t + cols[bounds[:, 0]])
            boxes.append((bounds[:, 1:] + [c0, r0, c0, r0]).astype(np.float64))
            areas.append(area.astype(np.int64))
    all_boxes, all_areas, all_owner = (np.concatenate(x) for x in (boxes, areas, owners))
    largest = np.full((n * t, 4), np.nan)
    largest_area = np.zeros(n * t, dtype=np.int64)
    if all_owner.size:
        # Components come in label (raster) order within each mask: the stable sort by
        # (owner, -area) puts the largest first and the earliest on ties.
        order = np.lexsort((-all_areas, all_owner))
        first = np.unique(all_owner[order], return_index=True)[1]
        pick = order[first]
        largest[all_owner[pick]] = all_boxes[pick]
        largest_area[all_owner[pick]] = all_areas[pick]
    return Components(
        boxes=all_boxes,
        areas=all_areas,
        owner=all_owner,
        largest=largest.reshape(n, t, 4),
        largest_area=largest_area.reshape(n, t),
    )


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(...) float64 IoU of (..., 4) boxes ``[x0, y0, x1, y1]`` broadcast against each other.

    Area is (x1 - x0) * (y1 - y0). A NaN (missing) box, or a pair with an empty union, has IoU 0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape[-1] != 4 or b.shape[-1] != 4:
        raise ShapeError("boxes", "(..., 4)", f"{a.shape} and {b.shape}")
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return np.nan_to_num(iou, nan=0.0)


def best_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, T) best IoU of each (N, T, 4) predicted box (NaN: none) with any of the (N, G, 4)
    NaN-padded ground-truth boxes of its image; 0 where there is no box."""
    if pred.ndim != 3 or gt.ndim != 3 or pred.shape[0] != gt.shape[0]:
        raise ShapeError("pred / gt boxes", "(N, T, 4) and (N, G, 4)", f"{pred.shape}, {gt.shape}")
    if gt.shape[1] == 0:
        return np.zeros(pred.shape[:2])
    return box_iou(pred[:, :, None, :], gt[:, None, :, :]).max(axis=2)


def best_component_iou(
    boxes: np.ndarray, owner: np.ndarray, gt: np.ndarray, n_thresholds: int
) -> np.ndarray:
    """(N, T) best IoU over every component of each mask and every ground-truth box of its image
    (MaxBoxAccV2's per-mask IoU), 0 for empty masks.

    Args:
        boxes: (L, 4) component boxes in the ground truth's coordinates.
        owner: (L,) mask index ``n * T + t`` of each component.
        gt: (N, G, 4) ground-truth boxes, NaN-padded.
        n_thresholds: T.
    """
    n = gt.shape[0]
    out = np.zeros(n * n_thresholds)
    if boxes.shape[0] and gt.shape[1]:
        image = owner // n_thresholds
        iou = box_iou(boxes[:, None, :], gt[image]).max(axis=1)
        np.maximum.at(out, owner, iou)
    return out.reshape(n, n_thresholds)


def to_original(boxes: np.ndarray, regions: np.ndarray, map_size: tuple[int, int]) -> np.ndarray:
    """(N, ..., 4) boxes in the pixels of (H, W) = ``map_size`` maps -> original image pixels.

    Each map covers the (N, 4) ``regions`` (x0, y0, x1, y1) of its original image
    (:meth:`Preprocessing.crop_region`). NaN stays NaN.
    """
    h, w = map_size
    r = np.asarray(regions, dtype=np.float64).reshape(-1, *(1,) * (boxes.ndim - 2), 4)
    scale = (r[..., 2:] - r[..., :2]) / np.array([w, h], dtype=np.float64)
    return boxes * np.tile(scale, 2) + np.tile(r[..., :2], 2)


def clip_to_region(gt: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(N, G, 4) NaN-padded boxes in original pixels, each intersected with the (N, 4) region of
    its image the model sees; a box left with no area (outside the crop) becomes NaN."""
    r = np.asarray(regions, dtype=np.float64)[:, None, :]
    g = np.asarray(gt, dtype=np.float64)
    out = np.concatenate(
        [np.maximum(g[..., :2], r[..., :2]), np.minimum(g[..., 2:], r[..., 2:])], -1
    )
    with np.errstate(invalid="ignore"):
        empty = ~((out[..., 2] > out[..., 0]) & (out[..., 3] > out[..., 1]))
    out[empty] = np.nan
    return out


def pad_boxes(boxes: list[np.ndarray]) -> np.ndarray:
    """A list of (G_i, 4) arrays -> (N, max G_i, 4) padded with NaN."""
    g = max((len(b) for b in boxes), default=0)
    out = np.full((len(boxes), g, 4), np.nan)
    for i, b in enumerate(boxes):
        if len(b):
            out[i, : len(b)] = b
    return out
