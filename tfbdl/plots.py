"""Figures, drawn with matplotlib's Agg backend (no display needed) and saved as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["bar_chart", "class_sample_grid", "pyplot", "save_figure"]


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Save a figure as PNG atomically and close it."""
    from tfbdl.io import atomic_path

    path = Path(path)
    with atomic_path(path) as temp:
        fig.savefig(temp, dpi=110, bbox_inches="tight", format="png")
    pyplot().close(fig)
    return path


def class_sample_grid(images: np.ndarray, labels: np.ndarray, class_names, path, *, per_class: int = 8,
                      title: str = "", seed: int = 0) -> Path:
    """A grid with one row per class and ``per_class`` random examples in it.

    images: uint8 [N, H, W, C] (C = 1 or 3); labels: int [N].
    """
    plt = pyplot()
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    fig, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 0.8, len(classes) * 0.85),
                             squeeze=False)
    for row, label in enumerate(classes):
        members = np.flatnonzero(labels == label)
        picks = rng.choice(members, size=min(per_class, members.size), replace=False)
        for col in range(per_class):
            ax = axes[row, col]
            ax.set_axis_off()
            if col < picks.size:
                image = images[picks[col]]
                ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
        name = class_names[label] if class_names is not None and label < len(class_names) else str(label)
        axes[row, 0].text(-4, images.shape[1] / 2, name, ha="right", va="center", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
        fig.subplots_adjust(top=1 - 0.35 / fig.get_figheight())  # title close to the grid
    return save_figure(fig, path)


def bar_chart(values: dict[str, float], path, *, title: str = "", ylabel: str = "") -> Path:
    """A labelled bar chart of ``{name: value}``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4, len(values) * 0.6), 3))
    ax.bar(list(values), list(values.values()), color="tab:blue")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    return save_figure(fig, path)
