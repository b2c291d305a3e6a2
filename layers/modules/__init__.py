"""Trainable modules and the loss."""

from layers.modules.l2norm import L2Norm
from layers.modules.multibox_loss import MultiBoxLoss

__all__ = ["L2Norm", "MultiBoxLoss"]
