"""Parts of the detector that learn nothing: default boxes and test-time post-processing."""

from layers.functions.detection import Detect
from layers.functions.prior_box import PriorBox

__all__ = ["Detect", "PriorBox"]
