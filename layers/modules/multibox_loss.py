"""SSD's training objective: Smooth L1 on matched offsets plus cross-entropy with hard negative mining."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from layers.box_utils import encode, match_indices


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
        # Host tensors: index the chosen rows (a host read is free there, and it skips most of the work);
        # CUDA tensors: masks over all rows, so the step never waits on the device. None: choose by device.
        self.select_rows: bool | None = None

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
            truth_idx, conf_t = match_indices(self.threshold, truths, labels, valid, priors)
        pos = conf_t > 0  # [B, P]
        num_pos = pos.sum(dim=1)  # [B]

        select = self.select_rows if self.select_rows is not None else not conf_data.is_cuda
        loss_l = localization_loss(loc_data, truths, truth_idx, priors, pos, self.variance, select)
        with torch.no_grad():
            log_p = F.log_softmax(conf_data.detach().float(), dim=2)  # one fused pass; logsumexp is slower
            mining = -log_p.gather(2, conf_t[..., None]).squeeze(2)  # [B, P]: the classic lse(x) - x[target]
        neg = hard_negative_mask(mining, pos, num_pos * self.negpos_ratio, exact_k=select)
        loss_c = masked_loss(_cross_entropy, conf_data, conf_t, pos | neg, select)

        total_pos = num_pos.sum().clamp(min=1).float()
        return loss_l / total_pos, loss_c / total_pos


def hard_negative_mask(loss: Tensor, pos: Tensor, num_neg: Tensor, exact_k: bool = False) -> Tensor:
    """Per image, the ``num_neg`` non-positive priors with the highest loss (at most P - 1).

    Args:
        loss (Tensor[B, P]): per-prior classification loss.
        pos (Tensor[B, P] bool): positive priors, never chosen.
        num_neg (Tensor[B]): negatives wanted per image.
        exact_k: read the largest ``num_neg`` on the host and take a top-k of that size instead of sorting
            every prior (faster on the CPU; a device sync on CUDA).
    Returns:
        Tensor[B, P] bool.
    """
    loss = loss.masked_fill(pos, float("-inf"))
    num_neg = num_neg.clamp(max=pos.shape[1] - 1)
    k = int(num_neg.max()) if exact_k else loss.shape[1]
    order = loss.topk(k, dim=1).indices if exact_k else loss.argsort(dim=1, descending=True)  # [B, k]
    chosen = torch.arange(k, device=loss.device)[None] < num_neg[:, None]  # the first num_neg of each row
    return torch.zeros_like(pos).scatter_(1, order, chosen)


def localization_loss(
    loc: Tensor,
    truths: Tensor,
    truth_idx: Tensor,
    priors: Tensor,
    pos: Tensor,
    variances: Sequence[float],
    select_rows: bool,
) -> Tensor:
    """Summed Smooth L1 between the predicted offsets of the positive priors and their encoded truths.

    Args:
        loc (Tensor[B, P, 4]), truths (Tensor[B, N, 4] point form), truth_idx (Tensor[B, P]): each prior's truth,
        priors (Tensor[P, 4]), pos (Tensor[B, P] bool).
        select_rows: encode and compare the positive rows only (needs a host read) rather than all rows.
    Returns:
        scalar float32 Tensor.
    """
    if select_rows:
        b, p = pos.nonzero(as_tuple=True)
        target = encode(truths[b, truth_idx[b, p]], priors[p], variances)  # [K, 4]
        return _smooth_l1(loc[b, p].float(), target).sum()
    matched = truths.gather(1, truth_idx[..., None].expand(-1, -1, 4))  # [B, P, 4]
    return masked_loss(_smooth_l1, loc, encode(matched, priors, variances), pos, select_rows=False)


def masked_loss(
    per_row: Callable[[Tensor, Tensor], Tensor], pred: Tensor, target: Tensor, chosen: Tensor, select_rows: bool
) -> Tensor:
    """Sum of a per-prior loss over the chosen priors, in float32.

    Args:
        per_row: maps (pred [..., D], target [...] or [..., D]) to the loss of each row, shape [...].
        pred (Tensor[B, P, D]), target (Tensor[B, P] or Tensor[B, P, D]), chosen (Tensor[B, P] bool).
        select_rows: index the chosen rows (few) rather than weigh all rows by the mask (no host read).
    Returns:
        scalar Tensor.
    """
    if select_rows:
        rows = chosen.nonzero(as_tuple=True)
        return per_row(pred[rows].float(), target[rows]).sum()
    return (per_row(pred.float(), target) * chosen).sum()


def _smooth_l1(pred: Tensor, target: Tensor) -> Tensor:
    return F.smooth_l1_loss(pred, target, reduction="none").sum(dim=-1)


def _cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
    return flat.view(target.shape)


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
