"""SSD's training objective: Smooth L1 on matched offsets plus cross-entropy with hard negative mining."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from layers.box_utils import match_batch


class MultiBoxLoss(nn.Module):
    """SSD weighted loss (paper eq. 1, alpha = 1), batched over images with masks instead of loops.

    1. Match priors to ground truth (IoU >= ``overlap_thresh``, plus each truth's best prior) and encode
       the matched boxes as regression targets.
    2. Localisation loss: Smooth L1 over the positive priors.
    3. Confidence loss: cross-entropy over the positives and, per image, the ``neg_pos`` x positives
       background priors with the highest loss (at most P - 1).
    Both are summed over the batch and divided by the number of positives (at least 1).

    ``prior_for_matching``, ``bkg_label``, ``neg_mining``, ``neg_overlap``, ``encode_target`` and ``use_gpu``
    are accepted for the classic signature; the classic uses none of them either (background is label 0,
    and the device follows the inputs).
    """

    def __init__(
        self,
        num_classes: int,
        overlap_thresh: float,
        prior_for_matching: bool,
        bkg_label: int,
        neg_mining: bool,
        neg_pos: int,
        neg_overlap: float,
        encode_target: bool,
        use_gpu: bool = True,
        variance: Sequence[float] = (0.1, 0.2),
    ) -> None:
        super().__init__()
        if bkg_label != 0:
            raise ValueError(f"background must be label 0, got bkg_label={bkg_label}")
        self.num_classes = num_classes
        self.threshold = overlap_thresh
        self.background_label = bkg_label
        self.encode_target = encode_target
        self.use_prior_for_matching = prior_for_matching
        self.do_neg_mining = neg_mining
        self.negpos_ratio = neg_pos
        self.neg_overlap = neg_overlap
        self.use_gpu = use_gpu
        self.variance = tuple(variance)

    def forward(self, predictions: tuple[Tensor, Tensor, Tensor], targets: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """
        Args:
            predictions: loc (Tensor[B, P, 4]), conf (Tensor[B, P, C] logits), priors (Tensor[P, 4]).
            targets: B tensors ``[n_i, 5]`` of (x1, y1, x2, y2, label) in [0, 1]; ``n_i`` may be 0.
        Returns:
            loss_l, loss_c: scalar float32 tensors.
        """
        loc_data, conf_data, priors = predictions
        truths, labels, valid = pad_targets(targets, loc_data.shape[0], loc_data.device)
        with torch.no_grad():
            loc_t, conf_t = match_batch(self.threshold, truths, labels, valid, priors, self.variance)
        pos = conf_t > 0  # [B, P]
        num_pos = pos.sum(dim=1)  # [B]

        loss_l = F.smooth_l1_loss(loc_data.float(), loc_t, reduction="none").sum(dim=2)
        loss_l = (loss_l * pos).sum()

        num_classes = conf_data.shape[2]
        ce = F.cross_entropy(conf_data.reshape(-1, num_classes).float(), conf_t.reshape(-1), reduction="none")
        ce = ce.view_as(conf_t)  # [B, P]
        neg = hard_negative_mask(ce.detach(), pos, num_pos * self.negpos_ratio)
        loss_c = (ce * (pos | neg)).sum()

        total_pos = num_pos.sum().clamp(min=1).float()
        return loss_l / total_pos, loss_c / total_pos


def hard_negative_mask(loss: Tensor, pos: Tensor, num_neg: Tensor) -> Tensor:
    """Per image, the ``num_neg`` non-positive priors with the highest loss (at most P - 1).

    Args:
        loss (Tensor[B, P]): per-prior classification loss.
        pos (Tensor[B, P] bool): positive priors, never chosen.
        num_neg (Tensor[B]): negatives wanted per image.
    Returns:
        Tensor[B, P] bool.
    """
    loss = loss.masked_fill(pos, float("-inf"))
    order = loss.argsort(dim=1, descending=True)
    rank = order.argsort(dim=1)
    num_neg = num_neg.clamp(max=pos.shape[1] - 1)
    return rank < num_neg[:, None]


def pad_targets(targets: Sequence[Tensor], batch: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Stack ragged per-image targets into padded tensors.

    Args:
        targets: B tensors ``[n_i, 5]`` (x1, y1, x2, y2, label).
    Returns:
        truths (Tensor[B, N, 4] float32), labels (Tensor[B, N] int64), valid (Tensor[B, N] bool), with
        N = max(1, max n_i).
    """
    if len(targets) != batch:
        raise ValueError(f"got {len(targets)} target tensors for a batch of {batch} images")
    rows = [t.to(device=device, dtype=torch.float32).reshape(-1, 5) for t in targets]
    rows.append(torch.zeros(1, 5, device=device))  # guarantees N >= 1, dropped below
    padded = pad_sequence(rows, batch_first=True, padding_value=-1.0)[:batch]
    valid = padded[..., 4] >= 0
    return padded[..., :4], padded[..., 4].long().clamp(min=0), valid
