"""TensorBoard event files of a training run (``train.py --tensorboard true``, rank 0): the losses, lr and
pictures per second at every logged iteration, each validation's metrics, and a few fixed pictures of the
validation split with the model's detections drawn. ``torch.utils.tensorboard`` (the ``tensorboard`` package) is
imported only when the flag asks for it.

    tensorboard --logdir SAVE_FOLDER/tensorboard
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from torch import nn

from utils.evaluation.runner import select_subset
from utils.inference import detect_images, draw_detections
from utils.training.engine import Session, StepResult, TrainError
from utils.training.state import TENSORBOARD_DIR
from utils.training.validation import scoring_view

NUM_PICTURES = 4  # validation pictures shown at each validation, the same every time
MAX_SIDE = 512  # longer side of a shown picture, in pixels (keeps the event files small)
DRAW_SCORE = 0.3  # detections drawn: this score or more (eval.py's --analysis_score), at most MAX_DRAWN each
MAX_DRAWN = 20


def require_tensorboard() -> None:
    """A TrainError (one line) unless ``torch.utils.tensorboard`` can be imported."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError as err:
        raise TrainError(f"--tensorboard true needs the tensorboard package (pip install tensorboard): {err}") from None


class TensorBoardHook:
    """Writes the run's scalars and pictures under ``SAVE_FOLDER/tensorboard/`` (step = iteration).

    A resumed run writes a new event file in the same folder, so TensorBoard shows one run; its ``purge_step``
    (the first iteration this run takes) makes TensorBoard drop what an earlier, killed run logged past the
    checkpoint this one resumed from.

    Args:
        s: the training session (rank 0).
        dataset: the validation split (``pull_image``), or None without validation.
    """

    def __init__(self, s: Session, dataset: Any | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(os.path.join(s.args.save_folder, TENSORBOARD_DIR), purge_step=s.iteration + 1)
        self.pictures = fixed_pictures(dataset) if dataset is not None else []
        self.class_names = list(s.facts.class_names)

    def __call__(self, s: Session, step: StepResult) -> None:
        """The step's losses, lr and pictures/s, at the iterations train.py prints (``--log_every`` and the last)."""
        if not step.finite or (s.iteration % s.args.log_every and s.iteration != s.args.max_iter):
            return
        scalars = {
            "loss/loc": step.loss_l, "loss/conf": step.loss_c, "loss/total": step.loss_l + step.loss_c,
            "train/lr": step.lr, "train/pictures_per_s": step.img_per_s,
        }  # fmt: skip
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, s.iteration)

    def validated(self, s: Session, score: Any) -> None:
        """A validation's metrics (``utils.training.validation.ValidationResult``: VOC mAP and AP per class, or
        COCO's AP, AP50, ...) and the fixed pictures with the model's detections."""
        values = dict(score.stats) if score.stats else {"mAP": score.value}
        for name, value in values.items():
            if math.isfinite(value):
                self.writer.add_scalar(f"validation/{name}", value, s.iteration)
        for name, ap in score.per_class.items():
            if ap is not None:
                self.writer.add_scalar(f"validation_AP/{name}", ap, s.iteration)
        for k, picture in enumerate(draw_pictures(s.net, self.pictures, self.class_names)):
            self.writer.add_image(f"detections/{k}", picture, s.iteration, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def fixed_pictures(dataset: Any, count: int = NUM_PICTURES) -> list[np.ndarray]:
    """``count`` pictures of ``dataset`` (a seeded choice, the same for every run on it), BGR ``[H, W, 3]``,
    scaled down to ``MAX_SIDE`` pixels at most."""
    pictures = []
    for index in select_subset(len(dataset), count):
        img = dataset.pull_image(int(index))
        scale = MAX_SIDE / max(img.shape[:2])
        if scale < 1.0:
            size = (round(img.shape[1] * scale), round(img.shape[0] * scale))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        pictures.append(img)
    return pictures


def draw_pictures(net: nn.Module, pictures: Sequence[np.ndarray], class_names: Sequence[str]) -> list[np.ndarray]:
    """``pictures`` (BGR ``[H, W, 3]``) with the detections of the training network ``net`` scoring ``DRAW_SCORE``
    or more drawn, as RGB ``[H, W, 3]``. The network runs in eval mode; every module's mode is restored after."""
    if not pictures:
        return []
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        found = detect_images(scoring_view(net), pictures, conf_thresh=DRAW_SCORE)
    finally:
        for module, training in modes:
            module.training = training
    drawn = (draw_detections(img, dets[:MAX_DRAWN], class_names) for img, dets in zip(pictures, found))
    return [cv2.cvtColor(img, cv2.COLOR_BGR2RGB) for img in drawn]
