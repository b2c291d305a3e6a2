"""SSD layers: box maths, default boxes, post-processing, L2Norm and the loss."""

from layers.box_utils import (
    center_size,
    decode,
    encode,
    intersect,
    jaccard,
    log_sum_exp,
    match,
    match_batch,
    nms,
    point_form,
)
from layers.functions import Detect, PriorBox
from layers.modules import L2Norm, MultiBoxLoss

__all__ = [
    "Detect",
    "L2Norm",
    "MultiBoxLoss",
    "PriorBox",
    "center_size",
    "decode",
    "encode",
    "intersect",
    "jaccard",
    "log_sum_exp",
    "match",
    "match_batch",
    "nms",
    "point_form",
]
