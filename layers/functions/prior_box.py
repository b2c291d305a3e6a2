"""Default boxes ("priors") of every feature map (SSD paper, section 2.2)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor


def boxes_per_location(aspect_ratios: Sequence[Sequence[float]]) -> list[int]:
    """Default boxes per feature-map cell: two squares plus a pair (r and 1/r) per extra aspect ratio."""
    return [2 + 2 * len(ratios) for ratios in aspect_ratios]


class PriorBox:
    """Compute the center-size priors ``[P, 4]`` for a config.

    Per location, in this order: the square of side ``s_k = min_size/min_dim``, the square of side
    ``sqrt(s_k * max_size/min_dim)``, then for each ratio r the boxes (s_k·√r, s_k/√r) and (s_k/√r, s_k·√r).
    Locations run row-major; a cell (i, j) of a map with step s has its centre at ``((j+0.5)/f, (i+0.5)/f)``
    with ``f = min_dim/s``. With ``clip`` True every value is clamped to [0, 1], as the classic port does; with
    ``clip`` "sizes" only widths and heights are, as torchvision's DefaultBoxGenerator does (a centre may then lie
    past the border: SSD300's 10x10 map, step 32, puts its last centres at 9.5·32/300 = 1.013).
    A step need not be a whole number of pixels: SSDLite320's 3x3 map has step 320/3, so f = 3 and its centres
    sit on the map's own grid, as torchvision places them.
    """

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.image_size = float(cfg["min_dim"])
        self.feature_maps = list(cfg["feature_maps"])
        self.steps = list(cfg["steps"])
        self.min_sizes = list(cfg["min_sizes"])
        self.max_sizes = list(cfg["max_sizes"])
        self.aspect_ratios = [list(r) for r in cfg["aspect_ratios"]]
        self.variance = tuple(cfg["variance"])
        self.clip = cfg["clip"]
        if self.clip not in (True, False, "sizes"):
            raise ValueError(f'clip must be true, false or "sizes", got {self.clip!r}')
        if any(v <= 0 for v in self.variance):
            raise ValueError(f"variances must be greater than 0, got {self.variance}")
        lengths = {len(x) for x in (self.feature_maps, self.steps, self.min_sizes, self.max_sizes, self.aspect_ratios)}
        if len(lengths) != 1:
            raise ValueError("feature_maps, steps, min_sizes, max_sizes and aspect_ratios must have equal lengths")

    def forward(self) -> Tensor:
        """Returns: Tensor[P, 4] float32 priors (cx, cy, w, h)."""
        maps = [self._priors_of_map(k) for k in range(len(self.feature_maps))]
        priors = torch.cat(maps, dim=0)
        if self.clip == "sizes":
            priors[:, 2:].clamp_(min=0.0, max=1.0)
        elif self.clip:
            priors.clamp_(min=0.0, max=1.0)
        return priors.float()

    __call__ = forward

    def _priors_of_map(self, k: int) -> Tensor:
        """Priors of feature map k in float64: Tensor[f*f*boxes, 4]."""
        f = self.feature_maps[k]
        f_k = self.image_size / self.steps[k]
        centers_1d = (torch.arange(f, dtype=torch.float64) + 0.5) / f_k
        cy, cx = torch.meshgrid(centers_1d, centers_1d, indexing="ij")
        centers = torch.stack((cx.reshape(-1), cy.reshape(-1)), dim=1)  # [f*f, 2], row-major
        sizes = torch.tensor(self._box_sizes(k), dtype=torch.float64)  # [boxes, 2]
        num_boxes = sizes.shape[0]
        return torch.cat(
            (centers[:, None, :].expand(-1, num_boxes, -1), sizes[None].expand(f * f, -1, -1)), dim=2
        ).reshape(-1, 4)

    def _box_sizes(self, k: int) -> list[tuple[float, float]]:
        s_k = self.min_sizes[k] / self.image_size
        s_k_prime = math.sqrt(s_k * (self.max_sizes[k] / self.image_size))
        sizes = [(s_k, s_k), (s_k_prime, s_k_prime)]
        for ratio in self.aspect_ratios[k]:
            root = math.sqrt(ratio)
            sizes += [(s_k * root, s_k / root), (s_k / root, s_k * root)]
        return sizes
