"""Test-time post-processing: per-class top-k, threshold, decode and NMS, batched."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)
from torch import Tensor, nn

from layers.box_utils import decode

# Largest suppression mask one torchvision NMS call may build on a GPU: its kernel keeps, for K boxes,
# K x ceil(K / 64) 64-bit words (2 GiB for 128,000 boxes).
NMS_MASK_BYTES: int = 256 * 2**20
# Most boxes one torchvision NMS call gets on the CPU: its kernel builds no mask, but compares every kept box
# with all later boxes of the call, so its time grows with the square of the call's size.
NMS_CPU_BOXES: int = 512
# A crowded (image, class) row is first cut at a score read from every SAMPLE_STRIDE-th prior, aiming at about
# SAMPLE_MARGIN x top_k candidates. 13 divides neither the 4 or 6 boxes of a location nor the priors of a feature map
# row (152, 114, 60, 30, 12 in SSD300; 256, 192, 96, 48, 24, 8 in SSD512), so the sample takes every box shape and
# moves across the columns from one row to the next.
SAMPLE_STRIDE: int = 13
SAMPLE_MARGIN: float = 2.5


class Detect(nn.Module):
    """Turn network outputs into per-class detections, for the whole batch at once.

    Per image and class, as the classic does: scores above ``conf_thresh``; the ``top_k`` highest of those
    go through NMS at ``nms_thresh`` (the cut comes before suppression); the survivors fill the rows, best
    first. ``keep_top_k`` then keeps only the best ``keep_top_k`` rows of each image across classes (Caffe
    keeps 200). Equal scores rank by prior index.

    The work follows ``top_k``, not the number of priors: a row with many more than ``top_k`` scores above the
    threshold is first cut at a score read from a sample of its priors (checked, and undone where it leaves too
    few), so only a few times ``top_k`` candidates per row are sorted, and at most ``top_k`` are decoded (in
    float32, even under autocast) and suppressed. Suppression is torchvision's
    NMS over whole (image, class) groups at once (boxes of different groups shifted apart), split into calls
    of bounded size (:func:`max_boxes_per_nms`: about 46,000 boxes on a GPU, 512 on the CPU), one call when all
    candidates fit.

    Args:
        num_classes: classes including background.
        bkg_label: index of the background class, whose rows stay zero.
        top_k: candidates per class entering NMS, and rows per class in the output.
        conf_thresh: a score must exceed this to be a candidate.
        nms_thresh: IoU above which a lower-scoring box of the same class is suppressed.
        keep_top_k: if set, rows kept per image across all classes.
        variance: the (center, size) encoding variances.
        clip_boxes: clamp decoded boxes to the image ([0, 1]) before NMS, as torchvision's SSD does; off by
            default, as in the classic port (whose boxes may cross the border).
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
        *,
        clip_boxes: bool = False,
    ) -> None:
        super().__init__()
        if nms_thresh <= 0:
            raise ValueError(f"nms_thresh must be positive, got {nms_thresh}")
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        self.num_classes = num_classes
        self.background_label = bkg_label
        self.top_k = top_k
        self.conf_thresh = conf_thresh
        self.nms_thresh = nms_thresh
        self.keep_top_k = keep_top_k
        self.variance = tuple(variance)
        self.clip_boxes = bool(clip_boxes)

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
        batch, num_priors, num_cls = conf_data.shape
        with torch.autocast(device_type=loc_data.device.type, enabled=False):
            scores = conf_data.float().contiguous()  # [B, P, C]
            flat, cand_scores = self._candidates(scores)
            image_prior, c = flat.div(num_cls, rounding_mode="floor"), flat.remainder(num_cls)
            b, p = image_prior.div(num_priors, rounding_mode="floor"), image_prior.remainder(num_priors)
            cand_loc = loc_data.reshape(-1, 4).index_select(0, image_prior).float()
            boxes = decode(cand_loc, prior_data.index_select(0, p).float(), self.variance)  # [K, 4]
            if self.clip_boxes:
                boxes = boxes.clamp(min=0.0, max=1.0)
        group = b * num_cls + c

        kept = _batched_nms(boxes, cand_scores, group, self.nms_thresh, max_boxes_per_nms(boxes.device), self.top_k)
        if self.keep_top_k is not None:
            best = _best_per_image(b.index_select(0, kept), cand_scores.index_select(0, kept), self.keep_top_k)
            kept = kept.index_select(0, best)
        b, c, group, cand_scores, boxes = (t.index_select(0, kept) for t in (b, c, group, cand_scores, boxes))
        rows = boxes.new_zeros(batch, num_cls, self.top_k, 5)
        rows[b, c, _rank_in_group(group)] = torch.cat((cand_scores[:, None], boxes), dim=1)
        return rows

    def _candidates(self, scores: Tensor) -> tuple[Tensor, Tensor]:
        """Per (image, class): the ``top_k`` best priors scoring above the threshold.

        Rows that a strided sample of the priors shows to be crowded are first cut at a higher score
        (:meth:`_sampled_cut`), leaving about ``SAMPLE_MARGIN * top_k`` candidates; a row that this cut leaves
        with fewer than ``top_k`` goes back to the plain threshold. Every row is then ranked by score and cut at
        ``top_k``, so the result never depends on the sample: the sample only spares sorting the rest.

        Args:
            scores (Tensor[B, P, C] float32, contiguous).
        Returns:
            positions into ``scores.view(-1)`` and their scores (Tensor[K] each, K <= B * (C - 1) * top_k),
            sorted by image, class, score descending, then prior.
        """
        num_priors, num_cls = scores.shape[1:]
        floor = scores.new_full((1, num_cls), self.conf_thresh)  # rounded as ``scores > conf_thresh`` rounds it
        floor[:, self.background_label] = math.inf
        cut = self._sampled_cut(scores, floor)  # [B, C]
        flat, group, counts = _above(scores, cut, few=cut is floor)
        short = (counts < self.top_k) & (cut > floor)  # [B, C]: rows the raised cut left too few
        any_short, any_crowded = _read_two_flags(short.any(), (counts > self.top_k).any())
        if any_short:
            cut = torch.where(short, floor, cut)
            flat, group, _ = _above(scores, cut, few=False)
        cand_scores = scores.view(-1).index_select(0, flat)
        order = _sort_by_group_then_score(group, cand_scores)
        if any_short or any_crowded:
            in_top_k = _rank_in_group(group.index_select(0, order)) < self.top_k
            order = order.index_select(0, in_top_k.nonzero().squeeze(1))
        return flat.index_select(0, order), cand_scores.index_select(0, order)

    def _sampled_cut(self, scores: Tensor, floor: Tensor) -> Tensor:
        """Per (image, class): the score to exceed, raised where a row is crowded.

        Every ``SAMPLE_STRIDE``-th prior is looked at. With ``rank`` the sample's share of
        ``SAMPLE_MARGIN * top_k``, a row's cut rises to the ``rank``-th best score of its sample where that score
        is above ``floor``, and stays at ``floor`` elsewhere. The caller checks what a raised cut leaves.

        Args:
            scores (Tensor[B, P, C] float32); floor (Tensor[1, C]): the plain threshold per class.
        Returns:
            ``floor`` itself when no row is raised (one read of the device), else Tensor[B, C] float32.
        """
        sample = scores[:, ::SAMPLE_STRIDE, :]  # [B, S, C], a view
        num_priors, num_sampled = scores.shape[1], sample.shape[1]
        rank = math.ceil(SAMPLE_MARGIN * self.top_k * num_sampled / num_priors)
        if rank >= num_sampled:  # too few priors for a sample to cut anything
            return floor
        sampled = (sample > floor).view(torch.uint8).sum(dim=1, dtype=torch.float32)  # [B, C]
        if not bool((sampled > rank).any()):
            return floor
        reached = sample.topk(rank, dim=1, sorted=False).values.amin(dim=1)  # [B, C]
        below = torch.nextafter(reached, reached.new_tensor(-math.inf))  # ``> below`` keeps what reaches it
        return torch.fmax(below, floor)  # a NaN in the sample leaves its row at the floor


def _above(scores: Tensor, cut: Tensor, few: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The scores above their row's cut.

    Args:
        scores (Tensor[B, P, C]); cut (Tensor[B, C] or Tensor[1, C]); few: whether few scores are expected
            above (see :func:`_true_positions`).
    Returns:
        positions into ``scores.view(-1)`` (Tensor[K] int64, ascending), their group ``image * C + class``
        (Tensor[K] int64) and the count of each group (Tensor[B, C] float32).
    """
    batch, num_priors, num_cls = scores.shape
    size = scores.numel()
    mask = torch.empty(-(-size // 8) * 8, dtype=torch.bool, device=scores.device)  # whole 8-byte words
    mask[size:] = False
    torch.gt(scores, cut[:, None, :], out=mask[:size].view(scores.shape))
    flat = _true_positions(mask, few)  # by image, prior, class
    group = flat.div(num_priors * num_cls, rounding_mode="floor") * num_cls + flat.remainder(num_cls)
    counts = scores.new_zeros(batch * num_cls).index_add_(0, group, scores.new_ones(()).expand(group.shape))
    return flat, group, counts.view(batch, num_cls)


def _true_positions(mask: Tensor, few: bool) -> Tensor:
    """Positions of the true elements of a flat bool mask, ascending (Tensor[K] int64).

    On the CPU, ``nonzero`` reads every byte; when ``few`` are true it is faster to find the non-zero 8-byte
    words first (``mask`` holds whole words) and read only their bytes.
    """
    if not few or mask.device.type != "cpu" or mask.numel() % 8:
        return mask.nonzero().squeeze(1)
    words = mask.view(torch.int64).nonzero().squeeze(1)
    word, byte = mask.view(-1, 8).index_select(0, words).nonzero(as_tuple=True)
    return words.index_select(0, word) * 8 + byte


def _read_two_flags(first: Tensor, second: Tensor) -> tuple[bool, bool]:
    """Two boolean scalars read from the device in one wait."""
    code = int(first.to(torch.uint8) * 2 + second.to(torch.uint8))
    return bool(code & 2), bool(code & 1)


def nms_op(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """torchvision's NMS operator, as ``torchvision.ops.nms`` calls it, without that wrapper's checks and usage
    logging (a fifth of a small call's time on the CPU, where Detect makes a hundred calls).

    Args:
        boxes (Tensor[N, 4]) (x1, y1, x2, y2), scores (Tensor[N]) of the same dtype.
    Returns:
        Tensor[M] int64: kept positions, by score descending.
    """
    return torch.ops.torchvision.nms(boxes, scores, iou_threshold)


def nms_mask_bytes(num_boxes: int) -> int:
    """Bytes of the suppression mask torchvision's GPU NMS builds for ``num_boxes`` boxes in one call."""
    return num_boxes * math.ceil(num_boxes / 64) * 8


def max_boxes_per_nms(device: torch.device) -> int:
    """Most boxes one NMS call of :class:`Detect` gets on ``device``.

    On a GPU: the most whose mask fits in ``NMS_MASK_BYTES``; on the CPU: ``NMS_CPU_BOXES``.
    """
    if device.type == "cpu":
        return NMS_CPU_BOXES
    boxes = math.isqrt(NMS_MASK_BYTES * 8)
    while nms_mask_bytes(boxes) > NMS_MASK_BYTES:
        boxes -= 1
    return max(boxes, 1)


def nms_chunk_sizes(group: Tensor, max_boxes: int, largest_group: int) -> list[int]:
    """Split boxes sorted by group into runs of whole groups of at most ``max_boxes`` boxes.

    A chunk takes the groups that end within one stretch of ``max_boxes - largest_group + 1`` positions, so it
    holds at most ``max_boxes`` boxes; a group larger than ``max_boxes`` forms a chunk of its own.

    Args:
        group (Tensor[K] int64): group of each box, sorted.
        max_boxes: bound on a chunk's size.
        largest_group: bound on a group's size.
    Returns:
        the chunks' sizes, in order, summing to K (one host sync, none when K <= max_boxes).
    """
    if group.numel() <= max_boxes:
        return [group.numel()] if group.numel() else []
    step = max(max_boxes - largest_group + 1, 1)
    chunks, end, last_chunk = [], 0, -1
    for size in torch.unique_consecutive(group, return_counts=True)[1].tolist():  # the groups' sizes, in order
        end += size
        chunk = (end - 1) // step  # the stretch in which the group ends
        if chunk == last_chunk:
            chunks[-1] += size
        else:
            chunks.append(size)
            last_chunk = chunk
    return chunks


def _batched_nms(
    boxes: Tensor, scores: Tensor, group: Tensor, nms_thresh: float, max_boxes: int, largest_group: int
) -> Tensor:
    """Positions of the boxes that survive NMS within their own group.

    torchvision NMS runs over chunks of whole groups (:func:`nms_chunk_sizes`); inside a call each group's
    boxes are shifted into a region of their own (``batched_nms``'s trick), in float64 so the shifted
    coordinates stay as exact as the originals however many groups there are.

    Args:
        boxes (Tensor[K, 4]), scores (Tensor[K]), group (Tensor[K] int64, sorted).
        max_boxes, largest_group: as :func:`nms_chunk_sizes`.
    Returns:
        Tensor[N] int64: positions into ``boxes``, ascending.
    """
    sizes = nms_chunk_sizes(group, max_boxes, largest_group)
    if not sizes:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    boxes64 = boxes.double()
    span = (boxes64.max() - boxes64.min()) + 1.0
    shifted = boxes64 + (group.double() * span)[:, None]
    kept, start = [], 0
    for chunk_boxes, chunk_scores in zip(shifted.split(sizes), scores.double().split(sizes)):
        kept.append(nms_op(chunk_boxes, chunk_scores, nms_thresh) + start)
        start += chunk_boxes.shape[0]
    # Ascending positions: mark the survivors, then list the marks; their number is known, so the host need not wait.
    survives = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    survives[torch.cat(kept)] = True
    return torch.nonzero_static(survives, size=sum(k.shape[0] for k in kept)).squeeze(1)


def _sort_by_group_then_score(group: Tensor, scores: Tensor) -> Tensor:
    """Permutation sorting candidates by group ascending, then score descending (ties keep their order).

    Args:
        group (Tensor[K] int64, below 2**31), scores (Tensor[K] float32).
    Returns:
        Tensor[K] int64.
    """
    # One int64 key orders both: the group above 32 bits, below them the score's bits turned into an integer
    # that falls as the float rises. Integer keys also let PyTorch use its radix sort on large inputs.
    bits = scores.contiguous().view(torch.int32).long()
    rising = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)  # orders as the floats do
    key = (group << 32) | (0x7FFFFFFF - rising)
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
        Tensor[M] int64: positions of those detections, ascending.
    """
    order = _sort_by_group_then_score(image, scores)
    best = torch.zeros_like(image, dtype=torch.bool)
    best[order] = _rank_in_group(image[order]) < keep_top_k
    return best.nonzero().squeeze(1)
