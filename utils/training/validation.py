"""Validation while training: the metric eval.py reports (VOC mAP or COCO AP) on a seeded subset of an evaluation
split, computed on the live training model, across DDP ranks, without touching its state or the random streams.

    validator = Validator(dataset, class_names, size=300, metric="voc07", num_images=500, rt=rt)
    result = validator.evaluate(net)  # the same on every rank: result.value, .per_class, .seconds
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

from layers import Detect
from ssd import Detector
from utils.evaluation.coco import coco_results, evaluate_coco
from utils.evaluation.runner import EvalPictures, run_inference, select_subset, to_devkit
from utils.evaluation.voc import ImageTruth, evaluate_voc
from utils.inference import DetectionArrays
from utils.training.runtime import Runtime

METRICS = ("voc07", "voc10", "coco")


def scoring_view(net: nn.Module, **detect_kwargs: Any) -> Detector:
    """The live training network ``net`` (either phase) with eval.py's post-processing: its architecture's defaults
    (the ``Detect`` it was built with), overridden by the ``detect_kwargs`` that are not None. Parameters are shared,
    not copied."""
    own = net.detect
    settings = {"top_k": own.top_k, "conf_thresh": own.conf_thresh, "nms_thresh": own.nms_thresh}
    settings.update({k: v for k, v in detect_kwargs.items() if v is not None})
    return Detector(net, Detect(net.num_classes, 0, keep_top_k=own.keep_top_k, variance=own.variance, **settings))


class ValidationResult(NamedTuple):
    metric: str  # "voc07" | "voc10" | "coco"
    value: float  # VOC mAP or COCO AP; nan when the subset holds no ground truth to score
    per_class: dict[str, float | None]  # VOC AP per class (None: no non-difficult object); empty for COCO
    stats: dict[str, float]  # COCO's AP, AP50, AP75, APs, APm, APl; empty for VOC
    num_images: int
    seconds: float  # wall-clock time of the whole evaluation


class Validator:
    """Scores a training model on the pictures ``eval.py --num_images K`` scores, with eval.py's numbers.

    Args:
        dataset: a VOCDetection opened with ``VOCAnnotationTransform(class_names, keep_difficult=True)`` and
            ``skip_bad=False``, or a COCODetection.
        class_names: the model's classes without background (label ``c`` of the model is ``class_names[c - 1]``).
        size: the model's input side.
        metric: "voc07" (11-point), "voc10" (area) or "coco".
        num_images: the seeded subset size K (None: every picture), as ``utils.evaluation.runner.select_subset``.
        batch_size, num_workers: of the inference DataLoader on each rank.
        rt: the process's Runtime; when distributed, rank ``r`` of ``W`` scores the subset's positions
            ``r, r + W, ...`` and every rank computes the metric on everything gathered.
        conf_thresh, top_k, nms_thresh, amp: as eval.py's flags of the same names (None: the model's defaults,
            as eval.py's).
    Broken annotations in the subset raise ValueError (naming the file) here, on every rank alike.
    """

    def __init__(
        self,
        dataset: Any,
        class_names: Sequence[str],
        size: int,
        metric: str = "voc07",
        num_images: int | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        rt: Runtime | None = None,
        conf_thresh: float | None = None,
        top_k: int | None = None,
        nms_thresh: float | None = None,
        amp: str = "none",
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.dataset, self.class_names, self.size, self.metric = dataset, list(class_names), int(size), metric
        self.batch_size, self.num_workers, self.amp = batch_size, num_workers, amp
        self.rank, self.world_size = (rt.rank, rt.world_size) if rt is not None else (0, 1)
        self.detect_kwargs = {"top_k": top_k, "conf_thresh": conf_thresh, "nms_thresh": nms_thresh}
        self.indices = select_subset(len(dataset), num_images)
        self._view: Detector | None = None
        if metric == "coco":
            self._check_coco()
        else:
            self._check_voc()

    def _check_coco(self) -> None:
        """The class names are categories of the split, and the split has ground truth."""
        by_name = dict(zip(self.dataset.class_names, self.dataset.category_ids))
        unknown = [n for n in self.class_names if n not in by_name]
        if unknown:
            raise ValueError(f"unknown class(es) {', '.join(unknown)}: not categories of {self.dataset.root}")
        if not self.dataset.coco.getAnnIds():
            raise ValueError(f"{self.dataset.root} {self.dataset.image_set} has no annotations to validate against")
        self.category_ids = [by_name[n] for n in self.class_names]
        self.image_ids = [self.dataset.ids[i] for i in self.indices]

    def _check_voc(self) -> None:
        """The dataset labels objects in the order of the class names, and the subset's annotations read."""
        mapping = self.dataset.target_transform.class_to_ind
        labelled = sorted(mapping, key=mapping.__getitem__)
        wanted = [n.strip().lower() for n in self.class_names]
        if labelled != wanted:
            k = next((i for i, (a, b) in enumerate(zip(labelled, wanted)) if a != b), min(len(labelled), len(wanted)))
            raise ValueError(
                f"{self.dataset.root}: the dataset's class {k} is {labelled[k] if k < len(labelled) else None!r}, "
                f"the model's is {wanted[k] if k < len(wanted) else None!r} ({len(labelled)} vs {len(wanted)} classes)"
            )
        for index in self.indices:  # fail now rather than at the first evaluation
            self.dataset.pull_objects(int(index))

    def evaluate(self, net: nn.Module) -> ValidationResult:
        """Score ``net`` (an SSD in either phase, or DDP/DataParallel around one) on the subset.

        The model runs in eval mode under ``torch.no_grad``; every module's train/eval mode is restored afterwards,
        BatchNorm statistics are not updated, and no global random stream (torch, numpy, python) is drawn from.
        """
        start = time.perf_counter()
        model = net.module if isinstance(net, (DistributedDataParallel, DataParallel)) else net
        if self._view is None or self._view.net is not model:
            self._view = scoring_view(model, **self.detect_kwargs)
        if self._view.size != self.size:
            raise ValueError(f"the model takes {self._view.size} px pictures, the validator was built for {self.size}")
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            with torch.no_grad():
                detections, truths = self._gather(*self._run_shard(self._view))
        finally:
            for module, training in modes:
                module.training = training
        value, per_class, stats = self._score(detections, truths)
        return ValidationResult(self.metric, value, per_class, stats, len(self.indices), time.perf_counter() - start)

    def _run_shard(self, view: Detector) -> tuple[list[DetectionArrays], list[ImageTruth | None], str | None]:
        """This rank's pictures → (detections, ground truth) in shard order, or the error that stopped it."""
        shard = self.indices[self.rank :: self.world_size]
        is_voc = self.metric != "coco"
        pictures = EvalPictures(self.dataset, shard, self.size, is_voc, view.preprocessing)
        conf_thresh = view.detect.conf_thresh
        try:
            detections, truths = run_inference(
                view, pictures, self.batch_size, self.num_workers, conf_thresh, is_voc, self.amp, progress=False
            )
        except ValueError as err:  # every rank must reach the gather below, then all raise it
            return [], [], str(err)
        return detections, truths, None

    def _gather(
        self, detections: list[DetectionArrays], truths: list[ImageTruth | None], error: str | None
    ) -> tuple[list[DetectionArrays], list[ImageTruth | None]]:
        """Every rank's shard → the whole subset in order (position ``p`` came from rank ``p % W``)."""
        shards = [(detections, truths, error)]
        if self.world_size > 1:
            shards = [None] * self.world_size
            dist.all_gather_object(shards, (detections, truths, error))
        errors = [e for _, _, e in shards if e is not None]
        if errors:
            raise ValueError(errors[0])
        w = self.world_size
        positions = range(len(self.indices))
        return [shards[p % w][0][p // w] for p in positions], [shards[p % w][1][p // w] for p in positions]

    def _score(
        self, detections: list[DetectionArrays], truths: list[ImageTruth | None]
    ) -> tuple[float, dict[str, float | None], dict[str, float]]:
        """(value, per-class APs, COCO stats) of the whole subset."""
        if self.metric == "coco":
            results = coco_results(detections, self.image_ids, self.category_ids)
            stats = evaluate_coco(self.dataset.coco, results, self.image_ids, quiet=True)
            return stats["AP"], {}, stats
        result = evaluate_voc(to_devkit(detections), truths, self.class_names, self.metric == "voc07")
        return (math.nan if result.mean_ap is None else float(result.mean_ap)), result.aps, {}
