"""Figures from tidy result tables: labelled axes with units, seed spread shown.

Every function takes a tidy :class:`pandas.DataFrame` (one row per
model / seed / θ / ε / metric) and returns the matplotlib ``Figure``; where a
table has several seeds, lines are the mean over seeds and the shaded band spans
the min–max over seeds (the spread, not a confidence interval).
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

MODEL_LABELS = {"stdcnn": "StdCNN", "gcnn_p4": "GCNN (p4)", "gcnn_p8": "GCNN (p8)",
                "gcnn_d4": "GCNN (p4m)", "lenet": "LeNet", "madry": "Madry net",
                "resnet18": "ResNet-18"}


def model_label(name: str) -> str:
    return MODEL_LABELS.get(name, name)


def _panels(n: int, width: float = 4.2, height: float = 3.2):
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False, sharey=True)
    return fig, axes[0]


def line_panels(frame: pd.DataFrame, x: str, y: str, hue: str, panel: str = "model",
                xlabel: str = "", ylabel: str = "", hue_label: str = "", title: str = "",
                hue_format: str = "{}", cmap: str = "viridis", ylim: tuple | None = None,
                seed: str = "seed") -> plt.Figure:
    """One panel per ``panel`` value, one line per ``hue`` value, ``y`` against ``x``.

    Rows that differ only in ``seed`` are averaged; the band is their min–max.
    """
    panels = list(dict.fromkeys(frame[panel])) if panel in frame else [None]
    fig, axes = _panels(len(panels))
    hues = sorted(frame[hue].unique())
    colors = plt.get_cmap(cmap)(np.linspace(0.05, 0.9, max(len(hues), 2)))
    for ax, name in zip(axes, panels):
        sub = frame if name is None else frame[frame[panel] == name]
        for color, value in zip(colors, hues):
            rows = sub[sub[hue] == value]
            if rows.empty:
                continue
            stats = rows.groupby(x)[y].agg(["mean", "min", "max", "count"]).reset_index()
            ax.plot(stats[x], stats["mean"], marker="o", ms=3, color=color,
                    label=hue_format.format(value))
            if stats["count"].max() > 1:
                ax.fill_between(stats[x], stats["min"], stats["max"], color=color, alpha=0.2, lw=0)
        ax.set_xlabel(xlabel or x)
        ax.set_title(model_label(name) if name is not None else title)
        ax.grid(alpha=0.3)
        if ylim:
            ax.set_ylim(*ylim)
    axes[0].set_ylabel(ylabel or y)
    axes[-1].legend(title=hue_label or hue, fontsize=8, title_fontsize=8,
                    loc="center left", bbox_to_anchor=(1.02, 0.5))
    if title and panels != [None]:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def heatmaps(frame: pd.DataFrame, row: str, col: str, value: str, panel: str = "model",
             row_label: str = "", col_label: str = "", value_label: str = "",
             col_format: str = "{:g}", title: str = "") -> plt.Figure:
    """One heatmap per ``panel`` value (mean over seeds), annotated with the values."""
    panels = list(dict.fromkeys(frame[panel]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, name in zip(axes[0], panels):
        grid = frame[frame[panel] == name].pivot_table(index=row, columns=col, values=value, aggfunc="mean")
        image = ax.imshow(grid.values, vmin=0, vmax=1, cmap="magma", aspect="auto", origin="lower")
        ax.set_xticks(range(grid.shape[1]), [col_format.format(c) for c in grid.columns], rotation=45)
        ax.set_yticks(range(grid.shape[0]), [f"{r:g}" for r in grid.index])
        for (i, j), v in np.ndenumerate(grid.values):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 0.6 else "black")
        ax.set_xlabel(col_label or col)
        ax.set_ylabel(row_label or row)
        ax.set_title(model_label(name))
    fig.colorbar(image, ax=axes[0].tolist(), label=value_label or value, shrink=0.9)
    if title:
        fig.suptitle(title)
    return fig


def errorbar_panels(frame: pd.DataFrame, x: str, y: str, low: str, high: str, hue: str,
                    panel: str | None = None, xlabel: str = "", ylabel: str = "",
                    hue_label: str = "", title: str = "") -> plt.Figure:
    """Point estimates with intervals (e.g. bootstrap CIs), one line per ``hue``."""
    panels = list(dict.fromkeys(frame[panel])) if panel else [None]
    fig, axes = _panels(len(panels))
    axes = list(axes)
    for ax, name in zip(axes, panels):
        sub = frame if name is None else frame[frame[panel] == name]
        for value, rows in sub.groupby(hue, sort=False):
            rows = rows.sort_values(x)
            ax.errorbar(rows[x], rows[y], yerr=[rows[y] - rows[low], rows[high] - rows[y]],
                        marker="o", ms=4, capsize=3, label=model_label(str(value)))
        ax.set_xlabel(xlabel or x)
        ax.set_title(title if name is None else str(name))
        ax.grid(alpha=0.3)
        ax.legend(title=hue_label or hue, fontsize=8, title_fontsize=8)
    axes[0].set_ylabel(ylabel or y)
    fig.tight_layout()
    return fig


def image_grid(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 8,
               cmap: str = "gray", symmetric: bool = False, title: str = "") -> plt.Figure:
    """Show a batch ``(N, C, H, W)`` as a grid; ``symmetric`` centres a diverging map on 0
    (for perturbations and principal components)."""
    images = images.detach().cpu()
    n = len(images)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.5 * ncols, 1.6 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        image = images[k].permute(1, 2, 0).squeeze(-1).numpy()
        if symmetric:
            bound = float(np.abs(image).max()) or 1.0
            ax.imshow(image if image.ndim == 2 else image.mean(-1), cmap="RdBu_r", vmin=-bound, vmax=bound)
        else:
            ax.imshow(image.clip(0, 1), cmap=cmap if image.ndim == 2 else None, vmin=0, vmax=1)
        if titles is not None:
            ax.set_title(titles[k], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def histograms(frame: pd.DataFrame, value: str, hue: str, panel: str = "model", hue_values=None,
               xlabel: str = "", ylabel: str = "count", hue_label: str = "", bins: int = 20) -> plt.Figure:
    """One panel per ``panel`` value, overlaid histograms of ``value`` for each ``hue`` value.

    All panels share the bins (from 0 to the largest finite value), so shifts read directly.
    """
    frame = frame[np.isfinite(frame[value])]
    panels = list(dict.fromkeys(frame[panel]))
    hue_values = list(hue_values) if hue_values is not None else sorted(frame[hue].unique())
    fig, axes = _panels(len(panels))
    edges = np.linspace(0, frame[value].max(), bins + 1)
    for ax, name in zip(axes, panels):
        for h in hue_values:
            values = frame[(frame[panel] == name) & (frame[hue] == h)][value]
            ax.hist(values, bins=edges, alpha=0.5, label=f"{hue_label or hue} = {h:g}")
        ax.set_xlabel(xlabel or value)
        ax.set_title(model_label(name))
        ax.legend(fontsize=8)
    axes[0].set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def save(fig: plt.Figure, path) -> None:
    """Save a figure next to the result tables (PNG, 150 dpi), creating the folder."""
    from pathlib import Path
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
