"""Figures from tidy result tables: labelled axes with units, seed spread shown.

Every function takes a tidy :class:`pandas.DataFrame` (one row per
model / seed / θ / ε / metric) and returns the matplotlib ``Figure``; where a
table has several seeds, lines are the mean over seeds and the shaded band spans
the min–max over seeds (the spread, not a confidence interval); the legend says so.

Figures are sized for a book page (about 8 inches wide at most, fonts of 9 pt
and up), so that they read at page width without scaling the text away.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.patches import Patch

from .errors import InvrobError

MODEL_LABELS = {"stdcnn": "StdCNN", "gcnn_p4": "GCNN (p4)", "gcnn_p8": "GCNN (p8)",
                "gcnn_d4": "GCNN (p4m)", "lenet": "LeNet", "madry": "Madry net", "wong": "Wong net",
                "resnet18": "ResNet-18", "vgg16": "VGG16"}
NORM_LABELS = {"linf": "ℓ∞", "l2": "ℓ2"}

# A diverging map for signed images (perturbations, principal components): red where
# the value is positive (a pixel made brighter), blue where it is negative (darker).
DIVERGING = "RdBu_r"
MAX_TICKS = 9  # at most this many distinct x values: each gets its own tick
PAGE_WIDTH = 8.6  # inches: a figure this wide fills the book's text column (~800 px)


def model_label(name: str) -> str:
    return MODEL_LABELS.get(name, name)


def norm_label(norm: str) -> str:
    """``linf`` → ``ℓ∞``, ``l2`` → ``ℓ2``: the notation of the prose."""
    return NORM_LABELS.get(norm, norm)


def _panels(n: int, width: float = 4.2, height: float = 3.2):
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False, sharey=True)
    return fig, axes[0]


def _value_ticks(ax, values) -> None:
    """A tick at every x value when there are few (a grid of ε or k), else matplotlib's."""
    values = sorted(set(float(v) for v in values))
    if 1 < len(values) <= MAX_TICKS:
        ax.set_xticks(values, [f"{v:g}" for v in values])


def _legend(fig, axes, handles, labels, title: str, where: str) -> None:
    if where == "below":
        ncol = min(len(labels), 4 if max(len(l) for l in labels) <= 18 else 2)
        fig.legend(handles, labels, title=title, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=ncol, fontsize=9, title_fontsize=9, frameon=False)
    else:
        axes[-1].legend(handles, labels, title=title, fontsize=9, title_fontsize=9,
                        loc="upper left", bbox_to_anchor=(1.02, 1.0))


def line_panels(frame: pd.DataFrame, x: str, y: str, hue: str, panel: str = "model",
                xlabel: str = "", ylabel: str = "", hue_label: str = "", title: str = "",
                hue_format: str = "{}", cmap: str = "viridis", ylim: tuple | None = None,
                seed: str = "seed", size: tuple[float, float] = (4.2, 3.2),
                legend: str = "right", reference: float | None = None,
                span: tuple[float, float, str] | None = None) -> plt.Figure:
    """One panel per ``panel`` value, one line per ``hue`` value, ``y`` against ``x``.

    Rows that differ only in ``seed`` are averaged (the line); the shaded band is their
    min–max, and the legend names it with the number of seeds. ``size``: inches per
    panel; ``legend``: ``"right"`` of the last panel or ``"below"`` the figure;
    ``reference``: a dashed horizontal line at that y (e.g. 0 for a difference);
    ``span``: ``(low, high, label)``, a grey horizontal band named in the legend (e.g.
    a decision rule's margin).
    """
    panels = list(dict.fromkeys(frame[panel])) if panel in frame else [None]
    hues = sorted(frame[hue].unique())
    # at most PAGE_WIDTH inches in all, with room for the legend beside or below the panels
    if legend == "right":
        width = min(size[0], (PAGE_WIDTH - 1.8) / len(panels))
        figsize = (width * len(panels) + 1.8, size[1])
    else:
        width = min(size[0], PAGE_WIDTH / len(panels))
        figsize = (width * len(panels), size[1] + 0.45 + 0.25 * -(-(len(hues) + 2) // 2))
    fig, axes = plt.subplots(1, len(panels), figsize=figsize, squeeze=False, sharey=True)
    axes = axes[0]
    colors = plt.get_cmap(cmap)(np.linspace(0.05, 0.9, max(len(hues), 2)))
    if cmap in ("tab10", "tab20", "Set1", "Set2", "Dark2"):  # qualitative: take colours in order
        colors = [plt.get_cmap(cmap)(i) for i in range(len(hues))]
    seeds = 1
    for ax, name in zip(axes, panels):
        sub = frame if name is None else frame[frame[panel] == name]
        for color, value in zip(colors, hues):
            rows = sub[sub[hue] == value]
            if rows.empty:
                continue
            stats = rows.groupby(x)[y].agg(["mean", "min", "max", "count"]).reset_index()
            ax.plot(stats[x], stats["mean"], marker="o", ms=3, color=color,
                    label=hue_format.format(value))
            n = rows[seed].nunique() if seed in rows else int(stats["count"].max())
            if n > 1:
                seeds = max(seeds, n)
                ax.fill_between(stats[x], stats["min"], stats["max"], color=color, alpha=0.2, lw=0)
        if reference is not None:
            ax.axhline(reference, color="0.3", lw=0.8, ls="--")
        if span is not None:
            ax.axhspan(span[0], span[1], color="0.88", lw=0, zorder=0, label=span[2])
        ax.set_xlabel(xlabel or x)
        ax.set_title(model_label(name) if name is not None else title)
        ax.grid(alpha=0.3)
        _value_ticks(ax, frame[x])
        if ylim:
            ax.set_ylim(*ylim)
    axes[0].set_ylabel(ylabel or y)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:  # every hue once, even when the first panel lacks some
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    legend_title = hue_label or hue
    if seeds > 1:
        legend_title += f"\n(line: mean of {seeds} seeds)"
        handles.append(Patch(color="0.5", alpha=0.35, lw=0))
        labels.append(f"band: min–max over {seeds} seeds")
    _legend(fig, axes, handles, labels, legend_title, legend)
    if title and panels != [None]:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def title_panels(fig: plt.Figure, titles: Sequence[str]) -> None:
    """Title a figure's panels in order (e.g. :func:`line_panels`' panels of a level that is not a
    model family, such as training ε): ``titles[i]`` over the i-th panel."""
    for ax, text in zip(fig.axes, titles):
        ax.set_title(text)


def capacity(table: pd.DataFrame) -> plt.Figure:
    """Chapter 03's capacity point: clean and AutoAttack accuracy against the net's width
    (``Study.capacity``'s table; line: mean over seeds, band: their min–max)."""
    eps = ", ".join(f"{e:g}" for e in sorted(table["eps_train"].unique()))
    long = table.melt(id_vars=["model", "width", "seed"], value_vars=["clean", "autoattack"],
                      var_name="measure", value_name="accuracy")
    long["measure"] = long["measure"].map({"clean": "clean", "autoattack": f"AutoAttack at ε = {eps}"})
    return line_panels(long, x="width", y="accuracy", hue="measure",
                       xlabel="width (× the reference net's channels)", ylabel="accuracy (test points)",
                       hue_label=f"trained at ε = {eps}", cmap="tab10", ylim=(0, 1), size=(6.0, 3.0),
                       legend="below")


def heatmaps(frame: pd.DataFrame, row: str, col: str, value: str, panel: str = "model",
             row_label: str = "", col_label: str = "", value_label: str = "",
             col_format: str = "{:g}", title: str = "") -> plt.Figure:
    """One heatmap per ``panel`` value (mean over seeds), annotated with the values.

    The panels share the row axis (labelled once, on the left) and one colour bar;
    the layout is constrained, so no label runs into the next panel.
    """
    panels = list(dict.fromkeys(frame[panel]))
    grids = [frame[frame[panel] == name].pivot_table(index=row, columns=col, values=value,
                                                     aggfunc="mean") for name in panels]
    same_rows = all(list(g.index) == list(grids[0].index) for g in grids)
    width = min(3.6, 7.2 / len(panels))
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels) + 1.0, 3.4),
                             squeeze=False, layout="constrained")
    for k, (ax, name, grid) in enumerate(zip(axes[0], panels, grids)):
        image = ax.imshow(grid.values, vmin=0, vmax=1, cmap="magma", aspect="auto", origin="lower")
        ax.set_xticks(range(grid.shape[1]), [col_format.format(c) for c in grid.columns],
                      rotation=45 if grid.shape[1] > 4 else 0)
        ax.set_yticks(range(grid.shape[0]), [f"{r:g}" for r in grid.index])
        size = 9 if grid.shape[1] <= 5 else 8
        for (i, j), v in np.ndenumerate(grid.values):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=size,
                    color="white" if v < 0.6 else "black")
        ax.set_xlabel(col_label or col)
        if k == 0 or not same_rows:
            ax.set_ylabel(row_label or row)
        else:
            ax.tick_params(labelleft=False)
        ax.set_title(model_label(name))
    fig.colorbar(image, ax=axes[0].tolist(), label=value_label or value, shrink=0.9)
    if title:
        fig.suptitle(title)
    return fig


def errorbar_panels(frame: pd.DataFrame, x: str, y: str, low: str, high: str, hue: str,
                    panel: str | None = None, xlabel: str = "", ylabel: str = "",
                    hue_label: str = "", title: str = "", bar_label: str = "",
                    sharey: bool = True) -> plt.Figure:
    """Point estimates with intervals (e.g. bootstrap CIs), one line per ``hue``.

    ``bar_label`` names the error bars in the legend (e.g. "95% bootstrap CI");
    ``sharey=False`` gives each panel its own y scale (e.g. ℓ∞ and ℓ2 distances).
    """
    panels = list(dict.fromkeys(frame[panel])) if panel else [None]
    width = min(4.2, (PAGE_WIDTH - 1.8) / len(panels))  # the legend goes beside the panels
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels) + 1.8, 3.2),
                             squeeze=False, sharey=sharey)
    axes = list(axes[0])
    for ax, name in zip(axes, panels):
        sub = frame if name is None else frame[frame[panel] == name]
        for value, rows in sub.groupby(hue, sort=False):
            rows = rows.sort_values(x)
            ax.errorbar(rows[x], rows[y], yerr=[rows[y] - rows[low], rows[high] - rows[y]],
                        marker="o", ms=4, capsize=3, label=model_label(str(value)))
        ax.set_xlabel(xlabel or x)
        ax.set_title(title if name is None else str(name))
        ax.grid(alpha=0.3)
        _value_ticks(ax, frame[x])
    legend_title = hue_label or hue
    if bar_label:
        legend_title += f"\n(bars: {bar_label})"
    axes[-1].legend(title=legend_title, fontsize=9, title_fontsize=9,
                    loc="upper left", bbox_to_anchor=(1.02, 1.0))
    if sharey or len(axes) == 1:
        axes[0].set_ylabel(ylabel or y)
    else:
        for ax in axes:
            ax.set_ylabel(ylabel or y)
    if title and panels != [None]:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def pareto_panels(frame: pd.DataFrame, x: str, y: str, group: str, panel: str = "model",
                  fixed=None, highlight=None, xlabel: str = "", ylabel: str = "",
                  group_label: str = "") -> plt.Figure:
    """Trade-off plot: one small dot per row (e.g. recipe × seed), each group's mean with bars
    spanning the min–max over its rows, and the Pareto front of the ``fixed`` groups' means
    (both coordinates larger-is-better; :func:`invrob.pareto.front_line`) as a step line, and
    the front of their random mixtures (:func:`invrob.pareto.hull_line`) dotted.

    ``highlight``: groups drawn as stars (e.g. a curriculum compared with the front).
    """
    from .pareto import front_line, hull_line

    panels = list(dict.fromkeys(frame[panel]))
    groups = list(dict.fromkeys(frame[group]))
    fixed = groups if fixed is None else [g for g in groups if g in set(fixed)]
    highlight = set(highlight or ())
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(panels), figsize=(min(PAGE_WIDTH, 5.4 * len(panels) + 2.4), 4.2),
                             squeeze=False)
    axes = list(axes[0])
    for ax, name in zip(axes, panels):
        sub = frame[frame[panel] == name]
        means = sub.groupby(group, sort=False)[[x, y]].agg(["mean", "min", "max"])
        for i, g in enumerate(groups):
            if g not in means.index:
                continue
            rows, m = sub[sub[group] == g], means.loc[g]
            color = colors(i % 10)
            ax.scatter(rows[x], rows[y], s=10, alpha=0.35, color=color)
            # max(0, ·): the mean of equal seeds can land an ulp outside their min–max
            ax.errorbar(m[(x, "mean")], m[(y, "mean")],
                        xerr=[[max(0.0, m[(x, "mean")] - m[(x, "min")])], [max(0.0, m[(x, "max")] - m[(x, "mean")])]],
                        yerr=[[max(0.0, m[(y, "mean")] - m[(y, "min")])], [max(0.0, m[(y, "max")] - m[(y, "mean")])]],
                        marker="*" if g in highlight else "o", ms=13 if g in highlight else 6,
                        capsize=2, color=color, label=str(g), zorder=3)
        front = [g for g in fixed if g in means.index]
        if front:
            points = np.array([[means.loc[g][(x, "mean")], means.loc[g][(y, "mean")]] for g in front])
            fx, fy = front_line(points)
            ax.plot(fx, fy, color="0.3", lw=1.2, ls="--", zorder=2, label="front of the fixed recipes")
            hx, hy = hull_line(points)
            if len(hx) > 1:
                ax.plot(hx, hy, color="0.5", lw=1.0, ls=":", zorder=2,
                        label="front of random mixtures\nof two fixed models")
        ax.set_xlabel(xlabel or x)
        ax.set_title(model_label(str(name)))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel or y)
    axes[-1].legend(title=(group_label or group) + "\n(dots: seeds; bars: min–max)", fontsize=8,
                    title_fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig


def image_grid(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 8,
               cmap: str = "gray", symmetric: bool | Sequence[bool] = False, title: str = "",
               bound: float | str | None = None, colorbar_label: str = "",
               row_labels: Sequence[str] | None = None, cell: float = 1.0) -> plt.Figure:
    """Show a batch ``(N, C, H, W)`` as a grid, ``ncols`` images per row.

    ``symmetric`` (for all images, or one flag per image) draws signed images —
    perturbations, principal components — with a diverging map centred on 0 (red =
    positive, i.e. brighter; blue = negative, darker; colour images are averaged over
    channels), all on one scale ``[-bound, bound]``: by default the largest absolute
    value of the signed images; ``"each"`` puts every image on its own scale (± its
    largest absolute value), for images whose overall scale carries no meaning. A colour
    bar labelled ``colorbar_label`` goes with them. Other images are drawn in [0, 1].
    ``titles``: one per image, or fewer (the images past the last title have none; e.g.
    the first row titled only). ``row_labels`` label the rows on the left; ``cell``:
    inches per image.
    """
    images = images.detach().cpu()
    n = len(images)
    flags = ([bool(symmetric)] * n if isinstance(symmetric, (bool, np.bool_))
             else [bool(s) for s in symmetric])
    if len(flags) != n:
        raise InvrobError(f"image_grid: {len(flags)} symmetric flags for {n} images")
    signed = [images[k] for k in range(n) if flags[k]]
    each = bound == "each"
    if bound is None:
        bound = max((float(im.abs().max()) for im in signed), default=1.0) or 1.0
    nrows = -(-n // ncols)
    has_titles = titles is not None and any(titles)
    label_width = 1.3 if row_labels else 0.0
    bar_width = 0.9 if signed else 0.0
    height = (cell + (0.3 if has_titles else 0.05)) * nrows + (0.4 if title else 0)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, layout="constrained",
                             figsize=(cell * ncols + label_width + bar_width, height))
    mappable = None
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if k >= n:
            ax.axis("off")
            continue
        image = images[k].permute(1, 2, 0).squeeze(-1).numpy()
        if flags[k]:
            image = image if image.ndim == 2 else image.mean(-1)
            scale = (float(np.abs(image).max()) or 1.0) if each else bound
            mappable = ax.imshow(image / scale if each else image, cmap=DIVERGING,
                                 vmin=-1 if each else -bound, vmax=1 if each else bound)
        else:
            ax.imshow(image.clip(0, 1), cmap=cmap if image.ndim == 2 else None, vmin=0, vmax=1)
        if titles is not None and k < len(titles) and titles[k]:
            ax.set_title(titles[k], fontsize=10)
    if row_labels:
        for r, label in enumerate(row_labels[:nrows]):
            axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10,
                                  labelpad=6)
    if mappable is not None:
        rows = sorted({k // ncols for k in range(n) if flags[k]})
        bar = fig.colorbar(mappable, ax=[axes[r, c] for r in rows for c in range(ncols)],
                           shrink=0.9, aspect=12 if len(rows) < 2 else 20, pad=0.02)
        if each:
            bar.set_ticks([-1, 0, 1], labels=["−max", "0", "+max"])
        bar.set_label(colorbar_label, fontsize=9)
        bar.ax.tick_params(labelsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def value_titles(values, fmt: str = "{:g}") -> list[str]:
    """One image title per value (a tensor, array or list), formatted by ``fmt``: e.g.
    ``value_titles(angles, "{:g}°")`` for images rotated by ``angles`` degrees."""
    return [fmt.format(v) for v in _as_list(values)]


def class_titles(labels, dataset: str = "cifar10") -> list[str]:
    """One image title per label: the class names of ``dataset`` (``invrob.data``)."""
    from .data import CIFAR10_CLASSES, MNIST_CLASSES

    names = {"mnist": MNIST_CLASSES, "cifar10": CIFAR10_CLASSES}[dataset]
    return [names[int(c)] for c in _as_list(labels)]


def prediction_titles(labels, predicted) -> list[str]:
    """One image title per image: ``"true → predicted"`` (e.g. ``"7 → 3"`` for a 7 taken for a 3)."""
    return [f"{t} → {p}" for t, p in zip(_as_list(labels), _as_list(predicted))]


def _as_list(values) -> list:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def histograms(frame: pd.DataFrame, value: str, hue: str, panel: str = "model", hue_values=None,
               xlabel: str = "", ylabel: str = "count", hue_label: str = "", bins: int = 20,
               hue_format: str = "{:g}") -> plt.Figure:
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
            ax.hist(values, bins=edges, alpha=0.5,
                    label=f"{hue_label or hue} = {hue_format.format(h)}")
        ax.set_xlabel(xlabel or value)
        ax.set_title(model_label(name))
        ax.legend(fontsize=9)
    axes[0].set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def save(fig: plt.Figure, path) -> None:
    """Save a figure next to the result tables (PNG, 150 dpi), creating the folder."""
    from pathlib import Path
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
