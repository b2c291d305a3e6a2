"""Pictures of evaluation results (matplotlib, imported when drawing)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from utils.evaluation.voc import ClassResult


def plot_pr_curves(curves: Mapping[str, ClassResult], path: str) -> None:
    """One precision/recall curve per class (with its AP in the legend) to ``path``."""
    from matplotlib.figure import Figure  # Figure needs no global backend

    fig = Figure(figsize=(9, 6), layout="constrained")
    ax = fig.add_subplot()
    for name, (rec, prec, ap) in curves.items():
        if ap is not None:
            ax.plot(np.concatenate(([0.0], rec)), np.concatenate(([1.0], prec)), label=f"{name} ({ap:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision / recall per class")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.savefig(path, dpi=100)
