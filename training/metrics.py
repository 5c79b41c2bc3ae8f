"""Classification metrics and plots (numpy/scipy/matplotlib; positive class = defective)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata


@dataclass(frozen=True)
class Scores:
    accuracy: float
    f1: float
    auroc: float
    confusion: np.ndarray  # rows: true class, columns: predicted class

    def as_metrics(self, prefix: str = "val_") -> dict[str, float]:
        return {f"{prefix}accuracy": self.accuracy, f"{prefix}f1": self.f1, f"{prefix}auroc": self.auroc}


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUROC; 0.5 when only one class is present."""
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def score(logits: torch.Tensor, labels: torch.Tensor) -> Scores:
    y = labels.numpy().astype(np.int64)
    prob = torch.softmax(logits.float(), dim=1)[:, 1].numpy()
    pred = logits.argmax(dim=1).numpy()
    confusion = np.zeros((2, 2), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    tp, fp, fn = confusion[1, 1], confusion[0, 1], confusion[1, 0]
    f1 = float(2 * tp / (2 * tp + fp + fn)) if (2 * tp + fp + fn) else 0.0
    return Scores(float((pred == y).mean()), f1, auroc(y, prob), confusion)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).float().mean())


def curves_figure(history: list[dict[str, float]]):  # noqa: ANN201 - matplotlib Figure
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    ax1.plot(epochs, [h["val_loss"] for h in history], marker="o", label="val loss")
    ax1.set_xlabel("epoch")
    ax1.legend()
    for key in ("val_accuracy", "val_f1", "val_auroc"):
        ax2.plot(epochs, [h[key] for h in history], marker="o", label=key)
    ax2.set_xlabel("epoch")
    ax2.set_ylim(0, 1.02)
    ax2.legend()
    fig.tight_layout()
    return fig


def confusion_figure(confusion: np.ndarray, class_names: tuple[str, ...]):  # noqa: ANN201
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), v in np.ndenumerate(confusion):
        ax.text(j, i, str(v), ha="center", va="center", color="black")
    fig.tight_layout()
    return fig


def bar_figure(names: list[str], values: list[float], ylabel: str):  # noqa: ANN201
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, len(names) * 1.2), 4))
    ax.bar(names, values)
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig
