"""The previous implementation of ``layers.Detect``, kept as the baseline of ``bench.py``'s post-processing case.

It thresholds first, then sorts every candidate by (image, class, score) and runs one torchvision NMS over all of
them: fast when a trained model leaves tens to hundreds of candidates per image, but on an untrained or early
checkpoint nearly every (prior, class) pair passes the threshold, and both the sort and the single NMS call grow
with all of them. Its output is the same as ``layers.Detect``'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import nms as tv_nms

from layers.box_utils import decode


class PreviousDetect(nn.Module):
    """The previous ``Detect``: threshold, one sort of all candidates, the per-class top-k cut, one NMS call.

    Args: as ``layers.Detect``.
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
            loc_data (Tensor[B, P, 4]), conf_data (Tensor[B, P, C]) probabilities, prior_data (Tensor[P, 4]).
        Returns:
            Tensor[B, C, top_k, 5] float32, as ``layers.Detect``.
        """
        with torch.autocast(device_type=loc_data.device.type, enabled=False):
            boxes = decode(loc_data.float(), prior_data.float(), self.variance)  # [B, P, 4]
            scores = conf_data.float()  # [B, P, C]
        batch, _, num_cls = scores.shape
        candidate = scores > self.conf_thresh
        candidate[..., self.background_label] = False
        b, p, c = candidate.nonzero(as_tuple=True)
        cand_scores = scores[b, p, c]
        group = b * num_cls + c

        order = _sort_by_group_then_score(group, cand_scores)
        b, p, c, group, cand_scores = b[order], p[order], c[order], group[order], cand_scores[order]
        in_top_k = _rank_in_group(group) < self.top_k
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
    """Permutation sorting by group ascending, then score descending: group (Tensor[K]), scores (Tensor[K])."""
    key = group.double() * 2 - scores.double()
    return key.argsort(stable=True)


def _rank_in_group(group: Tensor) -> Tensor:
    """Position of each element within its run of equal ``group`` values (Tensor[K], sorted) -> Tensor[K]."""
    position = torch.arange(group.numel(), device=group.device)
    is_first = torch.ones_like(group, dtype=torch.bool)
    is_first[1:] = group[1:] != group[:-1]
    first = torch.where(is_first, position, 0).cummax(dim=0).values
    return position - first


def _best_per_image(image: Tensor, scores: Tensor, keep_top_k: int) -> Tensor:
    """Whether each detection is among the ``keep_top_k`` best of its image: image, scores (Tensor[K]) -> bool."""
    order = _sort_by_group_then_score(image, scores)
    best = torch.zeros_like(image, dtype=torch.bool)
    best[order] = _rank_in_group(image[order]) < keep_top_k
    return best


def _batched_nms_mask(boxes: Tensor, scores: Tensor, group: Tensor, nms_thresh: float) -> Tensor:
    """Survivors of NMS within each group, in one torchvision call: boxes (Tensor[K, 4]) -> Tensor[K] bool."""
    survivors = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    if boxes.numel() == 0:
        return survivors
    boxes64 = boxes.double()
    span = (boxes64.max() - boxes64.min()) + 1.0
    shifted = boxes64 + (group.double() * span)[:, None]
    survivors[tv_nms(shifted, scores.double(), nms_thresh)] = True
    return survivors
