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
            scores = conf_data.float().transpose(1, 2).clone()  # [B, C, P]
        scores[:, self.background_label] = 0.0
        k = min(self.top_k, scores.shape[2])
        top_scores, top_idx = scores.topk(k, dim=2)  # [B, C, k], best first
        candidate = top_scores > self.conf_thresh
        num_cls = scores.shape[1]
        top_boxes = boxes[:, None].expand(-1, num_cls, -1, -1).gather(2, top_idx[..., None].expand(-1, -1, -1, 4))

        kept = candidate & _suppressed_mask(top_boxes, top_scores, candidate, self.nms_thresh)
        rows = _compact(torch.cat((top_scores[..., None], top_boxes), dim=3), kept)  # [B, C, k, 5]
        if self.keep_top_k is not None:
            rows = _keep_best_per_image(rows, self.keep_top_k)
        if k < self.top_k:
            rows = nn.functional.pad(rows, (0, 0, 0, self.top_k - k))
        return rows


def _suppressed_mask(boxes: Tensor, scores: Tensor, candidate: Tensor, nms_thresh: float) -> Tensor:
    """Which candidates survive NMS within their own (image, class) group.

    Args:
        boxes (Tensor[B, C, k, 4]), scores (Tensor[B, C, k]), candidate (Tensor[B, C, k] bool).
    Returns:
        Tensor[B, C, k] bool: True for the survivors.
    """
    flat_index = candidate.flatten().nonzero().squeeze(1)
    survivors = torch.zeros(candidate.numel(), dtype=torch.bool, device=candidate.device)
    if flat_index.numel() == 0:
        return survivors.view_as(candidate)
    k = candidate.shape[2]
    group = torch.div(flat_index, k, rounding_mode="floor")
    # float64 keeps the shifted coordinates as exact as the originals, however many groups there are.
    cand_boxes = boxes.reshape(-1, 4)[flat_index].double()
    span = (cand_boxes.max() - cand_boxes.min()) + 1.0
    shifted = cand_boxes + (group.double() * span)[:, None]
    keep = tv_nms(shifted, scores.flatten()[flat_index].double(), nms_thresh)
    survivors[flat_index[keep]] = True
    return survivors.view_as(candidate)


def _compact(rows: Tensor, keep: Tensor) -> Tensor:
    """Move the kept rows of each group to the front, in their order, and zero the rest.

    Args:
        rows (Tensor[B, C, k, D]), keep (Tensor[B, C, k] bool).
    Returns:
        Tensor[B, C, k, D].
    """
    k = rows.shape[2]
    target = torch.where(keep, keep.long().cumsum(dim=2) - 1, k)  # dropped rows go to a spare slot k
    out = rows.new_zeros(rows.shape[0], rows.shape[1], k + 1, rows.shape[3])
    out.scatter_(2, target[..., None].expand_as(rows), rows)
    return out[:, :, :k]


def _keep_best_per_image(rows: Tensor, keep_top_k: int) -> Tensor:
    """Zero all but the ``keep_top_k`` best rows of each image (across classes), then re-compact.

    Args:
        rows (Tensor[B, C, k, 5]): per-class detections, unused rows zero.
    Returns:
        Tensor[B, C, k, 5].
    """
    batch, num_cls, k, _ = rows.shape
    flat_scores = rows[..., 0].reshape(batch, -1)
    n = min(keep_top_k, flat_scores.shape[1])
    best = flat_scores.topk(n, dim=1).indices
    keep = torch.zeros_like(flat_scores, dtype=torch.bool).scatter_(1, best, True)
    keep &= flat_scores > 0
    return _compact(rows, keep.view(batch, num_cls, k))
