"""Test-time post-processing: decode offsets, threshold, per-class top-k and NMS, batched."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import nms as tv_nms

from layers.box_utils import decode


class Detect(nn.Module):
    """Turn network outputs into per-class detections, for the whole batch at once.

    Per image and class, as the classic does: scores above ``conf_thresh``; the ``top_k`` highest of those
    go through NMS at ``nms_thresh`` (the cut comes before suppression); the survivors fill the rows, best
    first. ``keep_top_k`` then keeps only the best ``keep_top_k`` rows of each image across classes (Caffe
    keeps 200). All images and classes go through a single torchvision NMS call (boxes of different groups
    are shifted apart, the trick of ``batched_nms``), and decoding runs in float32 even under autocast.

    Args:
        num_classes: classes including background.
        bkg_label: index of the background class, whose rows stay zero.
        top_k: candidates per class entering NMS, and rows per class in the output.
        conf_thresh: a score must exceed this to be a candidate.
        nms_thresh: IoU above which a lower-scoring box of the same class is suppressed.
        keep_top_k: if set, rows kept per image across all classes.
        variance: the (center, size) encoding variances.
    """

    def __init__(
        self,
        num_classes: int,
        bkg_label: int = 0,
        top_k: int = 200,
        conf_thresh: float = 0.01,
        nms_thresh: float = 0.45,
        keep_top_k: int | None = None,
        variance: Sequence[float] = (0.1, 0.2),
    ) -> None:
        super().__init__()
        if nms_thresh <= 0:
            raise ValueError(f"nms_thresh must be positive, got {nms_thresh}")
        self.num_classes = num_classes
        self.background_label = bkg_label
        self.top_k = top_k
        self.conf_thresh = conf_thresh
        self.nms_thresh = nms_thresh
        self.keep_top_k = keep_top_k
        self.variance = tuple(variance)

    @torch.no_grad()
    def forward(self, loc_data: Tensor, conf_data: Tensor, prior_data: Tensor) -> Tensor:
        """
        Args:
            loc_data (Tensor[B, P, 4]): predicted offsets.
            conf_data (Tensor[B, P, C]): class probabilities (softmax over C).
            prior_data (Tensor[P, 4]): center-size priors.
        Returns:
            Tensor[B, C, top_k, 5] float32: rows (score, x1, y1, x2, y2) in relative coordinates, sorted by
            score within a class, zero where unused; the background class is all zero.
        """
        with torch.autocast(device_type=loc_data.device.type, enabled=False):
            boxes = decode(loc_data.float(), prior_data.float(), self.variance)  # [B, P, 4]
            scores = conf_data.float()  # [B, P, C]
        batch, _, num_cls = scores.shape
        # Threshold first: a trained model leaves tens to hundreds of candidates per image out of P * C.
        candidate = scores > self.conf_thresh
        candidate[..., self.background_label] = False
        b, p, c = candidate.nonzero(as_tuple=True)
        cand_scores = scores[b, p, c]
        group = b * num_cls + c

        order = _sort_by_group_then_score(group, cand_scores)
        b, p, c, group, cand_scores = b[order], p[order], c[order], group[order], cand_scores[order]
        in_top_k = _rank_in_group(group) < self.top_k  # the cut comes before suppression
        b, p, c, group, cand_scores = b[in_top_k], p[in_top_k], c[in_top_k], group[in_top_k], cand_scores[in_top_k]
        cand_boxes = boxes[b, p]  # [K, 4]

        survivors = _batched_nms_mask(cand_boxes, cand_scores, group, self.nms_thresh)
        if self.keep_top_k is not None:
            kept = survivors.nonzero().squeeze(1)
            survivors[kept] = _best_per_image(b[kept], cand_scores[kept], self.keep_top_k)
        b, c, group, cand_scores, cand_boxes = (t[survivors] for t in (b, c, group, cand_scores, cand_boxes))
        rows = scores.new_zeros(batch, num_cls, self.top_k, 5)
        rows[b, c, _rank_in_group(group)] = torch.cat((cand_scores[:, None], cand_boxes), dim=1)
        return rows


def _sort_by_group_then_score(group: Tensor, scores: Tensor) -> Tensor:
    """Permutation sorting candidates by group ascending, then score descending (ties keep their order).

    Args:
        group (Tensor[K] int64), scores (Tensor[K] float32 in [0, 1]).
    Returns:
        Tensor[K] int64.
    """
    # Groups are 2 apart and scores lie in [0, 1], so one float64 key (exact for float32 scores) orders both.
    key = group.double() * 2 - scores.double()
    return key.argsort(stable=True)


def _rank_in_group(group: Tensor) -> Tensor:
    """Position of each element within its run of equal ``group`` values (``group`` sorted).

    Args:
        group (Tensor[K] int64), sorted.
    Returns:
        Tensor[K] int64: 0 for the first of each group, 1 for the next, ...
    """
    position = torch.arange(group.numel(), device=group.device)
    is_first = torch.ones_like(group, dtype=torch.bool)
    is_first[1:] = group[1:] != group[:-1]
    first = torch.where(is_first, position, 0).cummax(dim=0).values
    return position - first


def _best_per_image(image: Tensor, scores: Tensor, keep_top_k: int) -> Tensor:
    """Which detections are among the ``keep_top_k`` best of their image, across classes.

    Args:
        image (Tensor[K] int64): image index of each detection; scores (Tensor[K]).
    Returns:
        Tensor[K] bool.
    """
    order = _sort_by_group_then_score(image, scores)
    best = torch.zeros_like(image, dtype=torch.bool)
    best[order] = _rank_in_group(image[order]) < keep_top_k
    return best


def _batched_nms_mask(boxes: Tensor, scores: Tensor, group: Tensor, nms_thresh: float) -> Tensor:
    """Which boxes survive NMS within their own group, in one torchvision call.

    Args:
        boxes (Tensor[K, 4]), scores (Tensor[K]), group (Tensor[K] int64).
    Returns:
        Tensor[K] bool: True for the survivors.
    """
    survivors = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    if boxes.numel() == 0:
        return survivors
    # Shift each group's boxes into a region of its own (batched_nms's trick); float64 keeps the shifted
    # coordinates as exact as the originals, however many groups there are.
    boxes64 = boxes.double()
    span = (boxes64.max() - boxes64.min()) + 1.0
    shifted = boxes64 + (group.double() * span)[:, None]
    survivors[tv_nms(shifted, scores.double(), nms_thresh)] = True
    return survivors
