"""Learned-scale L2 normalisation of conv4_3 (ParseNet), as SSD uses it."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class L2Norm(nn.Module):
    """Normalise each spatial position to unit L2 norm over channels, then scale per channel.

    Args:
        n_channels: number of channels C.
        scale: initial value of every per-channel weight (20 in SSD).
        eps: added to the norm so that an all-zero position stays finite.
    """

    def __init__(self, n_channels: int, scale: float, eps: float = 1e-10) -> None:
        super().__init__()
        self.n_channels = n_channels
        self.gamma = scale
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(n_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.weight, self.gamma)

    def forward(self, x: Tensor) -> Tensor:
        """x (Tensor[B, C, H, W]) -> Tensor[B, C, H, W], computed in float32 (squares overflow fp16)."""
        x32 = x.float()
        norm = x32.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return (x32 / norm * self.weight.float().view(1, -1, 1, 1)).to(x.dtype)
