"""SSD's training objective: Smooth L1 on matched offsets plus cross-entropy with hard negative mining."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Integral

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
    Both are summed over the batch and divided by the number of positives (at least 1); :meth:`sums` gives
    them before that division, for normalising by the positives of a whole data-parallel batch.

    The positional arguments are the classic ones, so ``MultiBoxLoss(C, 0.5, True, 0, True, 3, 0.5, False)``
    reads as it always did. Only what the classic did is implemented: ``prior_for_matching`` and ``neg_mining``
    must be True, ``bkg_label`` 0, ``encode_target`` False and ``neg_overlap`` 0.5 (the classic ignores it
    too: negatives are mined among all background priors); anything else raises ValueError.

    Args:
        num_classes: classes including background; the last dimension of ``conf``.
        overlap_thresh: IoU at or above which a prior is positive, in (0, 1].
        neg_pos: hard negatives kept per positive, a non-negative integer.
        use_gpu: accepted for the classic signature and ignored: the loss runs where its inputs are.
        select_rows: how the chosen priors are gathered. True: index their rows (needs host reads of how many
            there are, which is cheap on the CPU and skips most of the work); False: weigh all rows by masks
            (no host read, so a CUDA step never waits for the device); None: True for CPU inputs, False
            for CUDA ones. Both give the same losses and gradients.
        variance: the (center, size) variances of the offset encoding.
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
        *,
        select_rows: bool | None = None,
        variance: Sequence[float] = (0.1, 0.2),
    ) -> None:
        super().__init__()
        _check_settings(
            num_classes, overlap_thresh, prior_for_matching, bkg_label, neg_mining, neg_pos, neg_overlap, encode_target
        )
        variance = tuple(float(v) for v in variance)
        if len(variance) != 2 or min(variance) <= 0:
            raise ValueError(f"variance must be two positive numbers (center, size), got {variance}")
        if select_rows not in (None, True, False):
            raise ValueError(f"select_rows must be None, True or False, got {select_rows!r}")
        self.num_classes = num_classes
        self.threshold = overlap_thresh
        self.negpos_ratio = int(neg_pos)
        self.variance = variance
        self._select_rows = select_rows

    @property
    def select_rows(self) -> bool | None:
        """The constructor's ``select_rows``: True rows, False masks, None by device (read-only)."""
        return self._select_rows

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, overlap_thresh={self.threshold}, neg_pos={self.negpos_ratio}, "
            f"variance={self.variance}, select_rows={self._select_rows}"
        )

    def forward(self, predictions: tuple[Tensor, Tensor, Tensor], targets: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """
        Args:
            predictions: loc (Tensor[B, P, 4]), conf (Tensor[B, P, C] logits), priors (Tensor[P, 4]).
            targets: B tensors ``[n_i, 5]`` of (x1, y1, x2, y2, label) in [0, 1]; ``n_i`` may be 0.
        Returns:
            loss_l, loss_c: scalar float32 tensors, the sums of :meth:`sums` divided by max(positives, 1).
        """
        loss_l, loss_c, num_pos = self.sums(predictions, targets)
        scale = num_pos.clamp(min=1)
        return loss_l / scale, loss_c / scale

    def sums(
        self, predictions: tuple[Tensor, Tensor, Tensor], targets: Sequence[Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The batch's summed losses and its number of positives, before any normalisation.

        Data-parallel training normalises by the positives of the whole global batch: each of W ranks all-reduces
        (sums) ``(loss_l, loss_c, num_pos)`` and backpropagates ``(loss_l + loss_c) * W / max(N, 1)`` with
        N the global positives; gradient averaging then gives exactly the gradient one process computes from
        all the pictures (hard negatives are mined per image, so the split changes nothing else). With masks
        (``select_rows=False``) nothing here reads a device value on the host.

        Args:
            predictions, targets: as :meth:`forward`.
        Returns:
            loss_l, loss_c (scalar float32 Tensors): summed over the batch;
            num_pos (scalar float32 Tensor): number of positive priors in the batch.
        """
        loc_data, conf_data, priors = predictions
        if conf_data.shape[-1] != self.num_classes:
            raise ValueError(
                f"conf has {conf_data.shape[-1]} classes per prior, the loss was built for {self.num_classes}"
            )
        truths, labels, valid = pad_targets(targets, loc_data.shape[0], loc_data.device)
        with torch.no_grad():
            truth_idx, conf_t = match_indices(self.threshold, truths, labels, valid, priors)
        pos = conf_t > 0  # [B, P]
        num_pos = pos.sum(dim=1)  # [B]

        select = self._select_rows if self._select_rows is not None else not conf_data.is_cuda
        loss_l = localization_loss(loc_data, truths, truth_idx, priors, pos, self.variance, select)
        with torch.no_grad():
            log_p = F.log_softmax(conf_data.detach().float(), dim=2)  # one fused pass; logsumexp is slower
            mining = -log_p.gather(2, conf_t[..., None]).squeeze(2)  # [B, P]: the classic lse(x) - x[target]
        neg = hard_negative_mask(mining, pos, num_pos * self.negpos_ratio, exact_k=select)
        loss_c = masked_loss(_cross_entropy, conf_data, conf_t, pos | neg, select)
        return loss_l, loss_c, num_pos.sum().float()


def _check_settings(
    num_classes: int,
    overlap_thresh: float,
    prior_for_matching: bool,
    bkg_label: int,
    neg_mining: bool,
    neg_pos: int,
    neg_overlap: float,
    encode_target: bool,
) -> None:
    """Raise ValueError for a classic constructor argument whose value this loss does not implement."""
    if not isinstance(num_classes, Integral) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2 (background included), got {num_classes!r}")
    if not 0 < overlap_thresh <= 1:
        raise ValueError(f"overlap_thresh must be an IoU in (0, 1], got {overlap_thresh}")
    if not prior_for_matching:
        raise ValueError(
            f"prior_for_matching={prior_for_matching!r} is not implemented: each truth's best prior is always "
            "matched to it, as the classic does; pass True"
        )
    if bkg_label != 0:
        raise ValueError(f"background must be label 0, got bkg_label={bkg_label}")
    if not neg_mining:
        raise ValueError(f"neg_mining={neg_mining!r} is not implemented: hard negatives are always mined; pass True")
    if isinstance(neg_pos, bool) or not isinstance(neg_pos, Integral) or neg_pos < 0:
        raise ValueError(f"neg_pos must be a non-negative integer (negatives per positive), got {neg_pos!r}")
    if neg_overlap != 0.5:
        raise ValueError(
            f"neg_overlap={neg_overlap} is not implemented: negatives are mined among all priors below "
            "overlap_thresh, as the classic does (it ignores neg_overlap too); pass 0.5"
        )
    if encode_target:
        raise ValueError(f"encode_target={encode_target!r} is not implemented: pass False, as the classic does")


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
    # non_blocking: host targets reach a CUDA batch without a blocking copy (one that waits for the stream).
    rows = [t.to(device=device, dtype=torch.float32, non_blocking=True).reshape(-1, 5) for t in targets]
    rows.append(torch.zeros(1, 5, device=device))  # guarantees N >= 1, dropped below
    padded = pad_sequence(rows, batch_first=True, padding_value=-1.0)[:batch]
    valid = padded[..., 4] >= 0
    return padded[..., :4], padded[..., 4].long().clamp(min=0), valid
