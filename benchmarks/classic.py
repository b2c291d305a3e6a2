"""The classic ssd.pytorch MultiBoxLoss, as the baseline of the loss benchmark.

Written out as ssd.pytorch had it (``layers/box_utils.py`` and ``layers/modules/multibox_loss.py``): a Python loop
over the images, each calling the single-image ``match`` (pairwise IoU by ``expand``, a loop over the truths to
force their best priors, ``encode``), then hard negative mining with the double sort over a ``log_sum_exp``
loss, Smooth L1 on the positives and cross-entropy on positives and mined negatives. Only what no longer runs on
PyTorch 2 is changed: ``Variable`` is gone, ``size_average=False`` is ``reduction="sum"``, the mining loss is
reshaped to ``[B, P]`` before the positives are zeroed (the well-known fix), and ``loc_t``/``conf_t`` are
allocated on the inputs' device instead of through a global CUDA tensor type.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def point_form(boxes: Tensor) -> Tensor:
    """boxes (Tensor[P, 4]) (cx, cy, w, h) -> Tensor[P, 4] (x1, y1, x2, y2)."""
    return torch.cat((boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2), 1)


def intersect(box_a: Tensor, box_b: Tensor) -> Tensor:
    """box_a (Tensor[A, 4]), box_b (Tensor[B, 4]) point form -> Tensor[A, B] intersection areas."""
    a, b = box_a.size(0), box_b.size(0)
    max_xy = torch.min(box_a[:, 2:].unsqueeze(1).expand(a, b, 2), box_b[:, 2:].unsqueeze(0).expand(a, b, 2))
    min_xy = torch.max(box_a[:, :2].unsqueeze(1).expand(a, b, 2), box_b[:, :2].unsqueeze(0).expand(a, b, 2))
    inter = torch.clamp(max_xy - min_xy, min=0)
    return inter[:, :, 0] * inter[:, :, 1]


def jaccard(box_a: Tensor, box_b: Tensor) -> Tensor:
    """box_a (Tensor[A, 4]), box_b (Tensor[B, 4]) point form -> Tensor[A, B] IoU."""
    inter = intersect(box_a, box_b)
    area_a = ((box_a[:, 2] - box_a[:, 0]) * (box_a[:, 3] - box_a[:, 1])).unsqueeze(1).expand_as(inter)
    area_b = ((box_b[:, 2] - box_b[:, 0]) * (box_b[:, 3] - box_b[:, 1])).unsqueeze(0).expand_as(inter)
    union = area_a + area_b - inter
    return inter / union


def encode(matched: Tensor, priors: Tensor, variances: Sequence[float]) -> Tensor:
    """matched (Tensor[P, 4]) point form, priors (Tensor[P, 4]) center-size -> Tensor[P, 4] offsets."""
    g_cxcy = (matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]
    g_cxcy /= variances[0] * priors[:, 2:]
    g_wh = (matched[:, 2:] - matched[:, :2]) / priors[:, 2:]
    g_wh = torch.log(g_wh) / variances[1]
    return torch.cat([g_cxcy, g_wh], 1)


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
    """Fill ``loc_t[idx]`` (Tensor[P, 4]) and ``conf_t[idx]`` (Tensor[P]) for one image's truths (Tensor[n, 4])."""
    overlaps = jaccard(truths, point_form(priors))
    best_prior_overlap, best_prior_idx = overlaps.max(1, keepdim=True)
    best_truth_overlap, best_truth_idx = overlaps.max(0, keepdim=True)
    best_truth_idx.squeeze_(0)
    best_truth_overlap.squeeze_(0)
    best_prior_idx.squeeze_(1)
    best_prior_overlap.squeeze_(1)
    best_truth_overlap.index_fill_(0, best_prior_idx, 2)
    for j in range(best_prior_idx.size(0)):
        best_truth_idx[best_prior_idx[j]] = j
    matches = truths[best_truth_idx]
    conf = labels[best_truth_idx] + 1
    conf[best_truth_overlap < threshold] = 0
    loc_t[idx] = encode(matches, priors, variances)
    conf_t[idx] = conf


def log_sum_exp(x: Tensor) -> Tensor:
    """x (Tensor[N, C]) -> Tensor[N, 1], stabilised by the global maximum as the classic does."""
    x_max = x.data.max()
    return torch.log(torch.sum(torch.exp(x - x_max), 1, keepdim=True)) + x_max


def classic_multibox_loss(
    predictions: tuple[Tensor, Tensor, Tensor],
    targets: Sequence[Tensor],
    num_classes: int = 21,
    threshold: float = 0.5,
    negpos_ratio: int = 3,
    variance: Sequence[float] = (0.1, 0.2),
) -> tuple[Tensor, Tensor]:
    """The classic ``MultiBoxLoss.forward``.

    Args:
        predictions: loc (Tensor[B, P, 4]), conf (Tensor[B, P, C] logits), priors (Tensor[P, 4]).
        targets: B tensors ``[n_i, 5]`` (x1, y1, x2, y2, label), every ``n_i`` at least 1 (the classic needs it).
    Returns:
        loss_l, loss_c: scalars divided by the number of positives.
    """
    loc_data, conf_data, priors = predictions
    num = loc_data.size(0)
    priors = priors[: loc_data.size(1), :]
    num_priors = priors.size(0)
    loc_t = torch.zeros(num, num_priors, 4, device=loc_data.device)
    conf_t = torch.zeros(num, num_priors, dtype=torch.long, device=loc_data.device)
    for idx in range(num):
        truths = targets[idx][:, :-1].data
        labels = targets[idx][:, -1].data
        match(threshold, truths, priors.data, variance, labels, loc_t, conf_t, idx)

    pos = conf_t > 0
    pos_idx = pos.unsqueeze(pos.dim()).expand_as(loc_data)
    loc_p = loc_data[pos_idx].view(-1, 4)
    loss_l = F.smooth_l1_loss(loc_p, loc_t[pos_idx].view(-1, 4), reduction="sum")

    batch_conf = conf_data.view(-1, num_classes)
    loss_c = log_sum_exp(batch_conf) - batch_conf.gather(1, conf_t.view(-1, 1))
    loss_c = loss_c.view(num, -1)
    loss_c[pos] = 0
    _, loss_idx = loss_c.sort(1, descending=True)
    _, idx_rank = loss_idx.sort(1)
    num_pos = pos.long().sum(1, keepdim=True)
    num_neg = torch.clamp(negpos_ratio * num_pos, max=pos.size(1) - 1)
    neg = idx_rank < num_neg.expand_as(idx_rank)

    pos_idx = pos.unsqueeze(2).expand_as(conf_data)
    neg_idx = neg.unsqueeze(2).expand_as(conf_data)
    conf_p = conf_data[(pos_idx + neg_idx).gt(0)].view(-1, num_classes)
    targets_weighted = conf_t[(pos + neg).gt(0)]
    loss_c = F.cross_entropy(conf_p, targets_weighted, reduction="sum")

    total = num_pos.data.sum()
    return loss_l / total, loss_c / total
