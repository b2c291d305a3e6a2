"""Box geometry, prior matching, offset encoding and NMS.

Boxes are ``(x1, y1, x2, y2)`` ("point form") or ``(cx, cy, w, h)`` ("center-size form"), in coordinates
relative to the image (1.0 = width or height). Functions that take ``[P, 4]`` also take ``[B, P, 4]``.
Numbers that must not drift (IoU, encode, decode) are computed in float32 whatever the input dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_iou
from torchvision.ops import nms as tv_nms

# Largest log-scale width/height offset decode will exponentiate: a box at most 1000/16 times its prior.
MAX_LOG_SCALE: float = math.log(1000.0 / 16)
# Smallest width/height encode will take the log of, so a degenerate box gives a large but finite target.
MIN_BOX_SIZE: float = 1e-6


def point_form(boxes: Tensor) -> Tensor:
    """(cx, cy, w, h) -> (x1, y1, x2, y2).

    Args:
        boxes (Tensor[..., 4]): boxes in center-size form.
    Returns:
        Tensor[..., 4]: the same boxes in point form.
    """
    half = boxes[..., 2:] / 2
    return torch.cat((boxes[..., :2] - half, boxes[..., :2] + half), dim=-1)


def center_size(boxes: Tensor) -> Tensor:
    """(x1, y1, x2, y2) -> (cx, cy, w, h).

    Args:
        boxes (Tensor[..., 4]): boxes in point form.
    Returns:
        Tensor[..., 4]: the same boxes in center-size form.
    """
    return torch.cat(((boxes[..., 2:] + boxes[..., :2]) / 2, boxes[..., 2:] - boxes[..., :2]), dim=-1)


def intersect(box_a: Tensor, box_b: Tensor) -> Tensor:
    """Pairwise intersection areas.

    Args:
        box_a (Tensor[A, 4]), box_b (Tensor[B, 4]): boxes in point form.
    Returns:
        Tensor[A, B]: area of the intersection of ``box_a[i]`` and ``box_b[j]`` (float32 at least).
    """
    box_a, box_b = _upcast(box_a), _upcast(box_b)
    top_left = torch.max(box_a[:, None, :2], box_b[None, :, :2])
    bottom_right = torch.min(box_a[:, None, 2:], box_b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def jaccard(box_a: Tensor, box_b: Tensor) -> Tensor:
    """Pairwise intersection over union (Jaccard overlap).

    Args:
        box_a (Tensor[A, 4]), box_b (Tensor[B, 4]): boxes in point form.
    Returns:
        Tensor[A, B]: IoU of ``box_a[i]`` and ``box_b[j]`` (float32 at least).
    """
    return box_iou(_upcast(box_a), _upcast(box_b))


def batched_jaccard(box_a: Tensor, box_b: Tensor) -> Tensor:
    """IoU of every box of ``box_a`` with every box of ``box_b``, image by image.

    Args:
        box_a (Tensor[B, N, 4]): point form; box_b (Tensor[M, 4] or Tensor[B, M, 4]): point form.
    Returns:
        Tensor[B, N, M]: float32 IoU; 0 where both boxes are empty.
    """
    box_a = _upcast(box_a)
    box_b = _upcast(box_b)
    if box_b.dim() == 2:
        box_b = box_b[None]
    # Separate contiguous coordinate planes: broadcasting strided [..., :2] slices makes [B, N, M, 2] temporaries.
    ax1, ay1, ax2, ay2 = (c[..., None] for c in box_a.unbind(-1))  # [B, N, 1]
    bx1, by1, bx2, by2 = (c.contiguous()[:, None] for c in box_b.unbind(-1))  # [B or 1, 1, M]
    # In-place steps: on the CPU, fresh [B, N, M] buffers cost as much as the arithmetic.
    inter = torch.minimum(ax2, bx2).sub_(torch.maximum(ax1, bx1)).clamp_(min=0)
    inter.mul_(torch.minimum(ay2, by2).sub_(torch.maximum(ay1, by1)).clamp_(min=0))  # [B, N, M]
    union = torch.add((ax2 - ax1) * (ay2 - ay1), (bx2 - bx1) * (by2 - by1)).sub_(inter)
    return inter.div_(union.clamp_(min=torch.finfo(torch.float32).tiny))


def encode(matched: Tensor, priors: Tensor, variances: Sequence[float] = (0.1, 0.2)) -> Tensor:
    """Encode ground-truth boxes as offsets from the priors they were matched to (SSD eq. 2).

    Args:
        matched (Tensor[P, 4] or Tensor[B, P, 4]): point-form truth of each prior.
        priors (Tensor[P, 4]): center-size priors.
        variances: the (center, size) variances that scale the offsets.
    Returns:
        Tensor like ``matched`` (float32): (dcx, dcy, dw, dh) regression targets.
    """
    matched, priors = _upcast(matched), _upcast(priors)
    g_cxcy = ((matched[..., :2] + matched[..., 2:]) / 2 - priors[..., :2]) / (variances[0] * priors[..., 2:])
    g_wh = (matched[..., 2:] - matched[..., :2]).clamp(min=MIN_BOX_SIZE) / priors[..., 2:]
    return torch.cat((g_cxcy, torch.log(g_wh) / variances[1]), dim=-1)


def decode(loc: Tensor, priors: Tensor, variances: Sequence[float] = (0.1, 0.2)) -> Tensor:
    """Undo :func:`encode`: turn predicted offsets into point-form boxes.

    Args:
        loc (Tensor[P, 4] or Tensor[B, P, 4]): predicted offsets.
        priors (Tensor[P, 4]): center-size priors.
    Returns:
        Tensor like ``loc`` (float32): point-form boxes. Size offsets are clamped before ``exp``.
    """
    loc, priors = _upcast(loc), _upcast(priors)
    centers = priors[..., :2] + loc[..., :2] * variances[0] * priors[..., 2:]
    sizes = priors[..., 2:] * torch.exp((loc[..., 2:] * variances[1]).clamp(max=MAX_LOG_SCALE))
    return torch.cat((centers - sizes / 2, centers + sizes / 2), dim=-1)


def log_sum_exp(x: Tensor) -> Tensor:
    """Numerically stable ``log(sum(exp(x)))`` over classes.

    Args:
        x (Tensor[N, C]): logits.
    Returns:
        Tensor[N, 1].
    """
    return torch.logsumexp(x, dim=1, keepdim=True)


def match_batch(
    threshold: float,
    truths: Tensor,
    labels: Tensor,
    valid: Tensor,
    priors: Tensor,
    variances: Sequence[float] = (0.1, 0.2),
) -> tuple[Tensor, Tensor]:
    """Match priors to ground truth for a whole batch at once and encode each prior's truth.

    Args:
        threshold, truths (Tensor[B, N, 4]), labels (Tensor[B, N]), valid (Tensor[B, N]), priors (Tensor[P, 4]):
            as :func:`match_indices`, which states the matching rules.
        variances: the (center, size) encoding variances.
    Returns:
        loc_t (Tensor[B, P, 4] float32): encoded offsets of each prior's truth.
        conf_t (Tensor[B, P] int64): 0 for background, label + 1 otherwise.
    """
    truth_idx, conf_t = match_indices(threshold, truths, labels, valid, priors)
    matched = _upcast(truths).gather(1, truth_idx[..., None].expand(-1, -1, 4))  # [B, P, 4]
    return encode(matched, priors, variances), conf_t


def match_indices(
    threshold: float, truths: Tensor, labels: Tensor, valid: Tensor, priors: Tensor
) -> tuple[Tensor, Tensor]:
    """Which truth each prior takes, and its class target; the classic rules, for a whole batch at once.

    Every prior takes the truth it overlaps most; then each truth's best prior is forced to that truth (in
    truth order, so when two truths share a best prior the later one wins) whatever its IoU; other priors
    whose best IoU is below ``threshold`` are background. Truths with ``valid`` False (padding, or boxes with
    no area) take part in nothing.

    Args:
        threshold: IoU at or above which a prior is positive.
        truths (Tensor[B, N, 4]): point-form ground truth, padded to N per image.
        labels (Tensor[B, N]): class index of each truth (0-based, without background).
        valid (Tensor[B, N] bool): which truths are real.
        priors (Tensor[P, 4]): center-size priors.
    Returns:
        truth_idx (Tensor[B, P] int64): index into N of each prior's truth (meaningful where conf_t > 0).
        conf_t (Tensor[B, P] int64): 0 for background, label + 1 otherwise.
    """
    batch, num_truths = labels.shape
    truths = _upcast(truths)
    valid = valid & (truths[..., 2] > truths[..., 0]) & (truths[..., 3] > truths[..., 1])
    # Padding rows are (-1, -1, -1, -1) and degenerate truths have no area: their IoU with every prior is 0, so
    # they never beat a real truth's overlap, and the forcing below leaves them out.
    overlaps = batched_jaccard(truths, point_form(_upcast(priors)))  # [B, N, P]

    best_prior_idx = overlaps.argmax(dim=2)  # [B, N]
    best_truth_overlap, best_truth_idx = overlaps.max(dim=1)  # [B, P]

    # The highest truth index that names a prior as its best wins it, as the classic in-order loop does.
    truth_ids = torch.arange(num_truths, device=labels.device).expand(batch, num_truths)
    forced = torch.full_like(best_truth_idx, -1)
    forced.scatter_reduce_(1, best_prior_idx, torch.where(valid, truth_ids, -1), reduce="amax")
    is_forced = forced >= 0
    best_truth_idx = torch.where(is_forced, forced, best_truth_idx)
    best_truth_overlap = best_truth_overlap.masked_fill(is_forced, 2.0)

    conf_t = labels.long().gather(1, best_truth_idx) + 1
    conf_t = conf_t.masked_fill(best_truth_overlap < threshold, 0)
    return best_truth_idx, conf_t


def match(
    threshold: float,
    truths: Tensor,
    priors: Tensor,
    variances: Sequence[float],
    labels: Tensor,
    loc_t: Tensor,
    conf_t: Tensor,
    idx: int,
) -> None:
    """Classic single-image matcher: fill ``loc_t[idx]`` and ``conf_t[idx]`` in place.

    Args:
        threshold: IoU at or above which a prior is positive.
        truths (Tensor[n, 4]): point-form ground truth of image ``idx``.
        priors (Tensor[P, 4]): center-size priors.
        variances: the (center, size) encoding variances.
        labels (Tensor[n]): 0-based class of each truth.
        loc_t (Tensor[B, P, 4]), conf_t (Tensor[B, P]): outputs, written at ``idx``.
    """
    valid = torch.ones(1, truths.shape[0], dtype=torch.bool, device=truths.device)
    loc, conf = match_batch(threshold, truths[None], labels[None], valid, priors, variances)
    loc_t[idx] = loc[0]
    conf_t[idx] = conf[0]


def nms(boxes: Tensor, scores: Tensor, overlap: float = 0.5, top_k: int = 200) -> tuple[Tensor, int]:
    """Greedy non-maximum suppression over the ``top_k`` highest-scoring boxes.

    Args:
        boxes (Tensor[N, 4]): point-form boxes.
        scores (Tensor[N]): their scores.
        overlap: IoU above which the lower-scoring box is suppressed.
        top_k: how many of the best boxes enter suppression (the cut comes first).
    Returns:
        keep (LongTensor[count]): indices into ``boxes`` of the survivors, best first.
        count: how many survived.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device), 0
    candidates = scores.topk(min(top_k, scores.numel())).indices
    keep = candidates[tv_nms(_upcast(boxes[candidates]), _upcast(scores[candidates]), overlap)]
    return keep, int(keep.numel())


def _upcast(t: Tensor) -> Tensor:
    """Half-precision tensors to float32, so that areas and logs do not overflow or lose precision."""
    return t.float() if t.is_floating_point() and t.element_size() < 4 else t
