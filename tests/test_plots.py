"""Layout properties of the book's figures that can fail: overlapping labels, a diverging
map not centred on 0, bands without a name, figures too wide for the page."""
from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from invrob import plots  # noqa: E402
from invrob.errors import InvrobError  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def boxes(fig):
    """Each axes' tight bounding box (its labels, ticks and texts included), in pixels."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [ax.get_tightbbox(renderer) for ax in fig.axes]


def overlap(a, b) -> float:
    """Area (px²) shared by two boxes."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0) * max(h, 0)


def robustness(seeds=(0, 1)):
    rows = [{"model": m, "theta": t, "eps": e, "seed": s, "accuracy": max(0.0, 0.9 - e * 2 - t / 1000)}
            for m in ("stdcnn", "gcnn_p4") for t in (0, 30, 60, 90, 120, 150, 180)
            for e in (0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3) for s in seeds]
    return pd.DataFrame(rows)


def test_heatmap_panels_labels_do_not_overlap():
    """The second panel's y label (or ticks) must not run into the first panel, nor the colour bar."""
    fig = plots.heatmaps(robustness(), row="theta", col="eps", value="accuracy",
                         row_label="train θ (degrees)", col_label="ℓ∞ budget ε (pixel scale)",
                         value_label="robust accuracy")
    found = boxes(fig)
    assert len(found) == 3  # two panels and the colour bar
    for a, b in itertools.combinations(found, 2):
        assert overlap(a, b) < 1.0, f"labels overlap: {a} and {b}"
    # the row axis is labelled once, on the left
    assert fig.axes[0].get_ylabel() == "train θ (degrees)" and fig.axes[1].get_ylabel() == ""


def test_diverging_image_grid_maps_zero_to_the_centre():
    x = torch.rand(4, 1, 28, 28)
    delta = (torch.rand(4, 1, 28, 28) - 0.7) * 0.2  # mostly negative: 0 must still be the centre
    fig = plots.image_grid(torch.cat([x, delta]), ncols=4, symmetric=[False] * 4 + [True] * 4,
                           colorbar_label="pixel change")
    images = [ax.images[0] for ax in fig.axes if ax.images]
    grey, signed = images[:4], images[4:]
    for image in signed:
        assert image.get_cmap().name == plots.DIVERGING
        low, high = image.get_clim()
        assert low == pytest.approx(-high) and high == pytest.approx(float(delta.abs().max()))
        assert image.norm(0.0) == pytest.approx(0.5)  # 0 is the map's centre (white)
        centre = np.array(image.get_cmap()(0.5)[:3])
        assert (centre > 0.9).all(), "the centre of the diverging map should be (near) white"
        # red where brighter, blue where darker
        red, blue = image.to_rgba(np.array([[high]]))[0, 0], image.to_rgba(np.array([[low]]))[0, 0]
        assert red[0] > red[2] and blue[2] > blue[0]
    for image in grey:  # the images themselves stay grey in [0, 1]
        assert image.get_clim() == (0, 1) and image.get_cmap().name == "gray"
    assert any(ax.get_ylabel() == "pixel change" for ax in fig.axes), "no colour bar"


def test_image_grid_bound_each_and_bad_flags():
    components = torch.randn(8, 1, 28, 28) * torch.linspace(0.1, 10, 8).view(-1, 1, 1, 1)
    fig = plots.image_grid(components, ncols=4, symmetric=True, bound="each",
                           row_labels=["first", "second"])
    for image in (ax.images[0] for ax in fig.axes if ax.images):
        assert image.get_clim() == (-1, 1) and np.abs(image.get_array()).max() == pytest.approx(1.0)
    found = boxes(fig)
    images = [b for ax, b in zip(fig.axes, found) if ax.images]
    for a, b in itertools.combinations(images, 2):  # row labels do not run into the images
        assert overlap(a, b) < 1.0
    with pytest.raises(InvrobError, match="symmetric flags"):
        plots.image_grid(components, symmetric=[True] * 3)


def test_image_titles_from_values_classes_and_predictions():
    assert plots.value_titles(torch.tensor([0.0, 22.5, -60.0]), "{:g}°") == ["0°", "22.5°", "-60°"]
    assert plots.value_titles([0.1, 2]) == ["0.1", "2"]
    assert plots.class_titles(torch.tensor([0, 9, 3])) == ["airplane", "truck", "cat"]
    assert plots.class_titles([7], "mnist") == ["7"]
    assert plots.prediction_titles(torch.tensor([7, 1]), torch.tensor([3, 1])) == ["7 → 3", "1 → 1"]


def test_image_grid_with_fewer_titles_than_images_titles_the_first():
    fig = plots.image_grid(torch.rand(8, 1, 28, 28), titles=["a", "", "c"], ncols=4)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == ["a", "", "c", "", "", "", "", ""]


def test_title_panels_titles_each_panel_in_order():
    frame = pd.DataFrame({"eps": [0.0, 0.0, 0.3, 0.3], "k": [1, 5, 1, 5], "cos": [0.1, 0.2, 0.3, 0.4], "seed": 0,
                          "what": "a"})
    fig = plots.line_panels(frame, x="k", y="cos", hue="what", panel="eps")
    assert [ax.get_title() for ax in fig.axes] == ["0.0", "0.3"]
    plots.title_panels(fig, ["at ε = 0", "at ε = 0.3"])
    assert [ax.get_title() for ax in fig.axes] == ["at ε = 0", "at ε = 0.3"]


def test_line_panels_name_the_seed_band_and_fit_the_page():
    frame = robustness()
    fig = plots.line_panels(frame[frame.eps > 0], x="theta", y="accuracy", hue="eps",
                            xlabel="θ (degrees)", ylabel="robust accuracy", hue_label="ℓ∞ budget ε")
    legend = fig.axes[-1].get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert "band: min–max over 2 seeds" in labels
    assert "mean of 2 seeds" in legend.get_title().get_text()
    assert fig.get_figwidth() <= plots.PAGE_WIDTH + 1e-9
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
        assert overlap(box, ax.get_window_extent(renderer)) < 1.0, "the legend covers a panel"
    # one seed: no band, and no legend entry for one
    one = robustness(seeds=(0,))
    fig = plots.line_panels(one[one.eps > 0], x="theta", y="accuracy", hue="eps")
    labels = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert not any("seeds" in label for label in labels)
    assert not any(ax.collections for ax in fig.axes)


def test_line_panels_legend_below_and_few_x_values_each_get_a_tick():
    frame = pd.DataFrame([{"model": "lenet", "eps_train": e, "seed": 0, "comparison": c,
                           "mean_cosine": v + e}
                          for e in (0, 0.05, 0.1, 0.2, 0.3)
                          for c, v in [("adversarial vs rotation (the claim)", 0.2),
                                       ("random vs random (ℝ⁷⁸⁴)", 0.1)]])
    fig = plots.line_panels(frame, x="eps_train", y="mean_cosine", hue="comparison",
                            size=(7.0, 3.8), legend="below")
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == pytest.approx([0, 0.05, 0.1, 0.2, 0.3])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    assert legend.y1 <= ax.get_tightbbox(renderer).y0 + 1.0, "the legend is not below the panel"


def test_errorbar_panels_own_scales_and_named_bars():
    frame = pd.DataFrame([{"model": m, "theta": t, "norm": n, "mean": base * (1 - t / 400)}
                          for m in ("stdcnn", "gcnn_p4") for t in (0, 90, 180)
                          for n, base in [("ℓ∞ distance", 0.08), ("ℓ2 distance", 1.2)]])
    frame = frame.assign(mean_low=frame["mean"] * 0.9, mean_high=frame["mean"] * 1.1)
    fig = plots.errorbar_panels(frame, x="theta", y="mean", low="mean_low", high="mean_high",
                                hue="model", panel="norm", bar_label="95% bootstrap CI",
                                sharey=False)
    a, b = fig.axes[:2]
    assert a.get_ylim()[1] < 0.2 < 1.0 < b.get_ylim()[1]  # each norm on its own scale
    assert "95% bootstrap CI" in b.get_legend().get_title().get_text()
    found = boxes(fig)
    assert overlap(found[0], found[1]) < 1.0


def test_norm_labels_use_the_prose_notation():
    assert plots.norm_label("linf") == "ℓ∞" and plots.norm_label("l2") == "ℓ2"


def test_pareto_panels_draws_seeds_means_and_the_front_of_the_fixed_groups():
    rows = []
    means = {"a": (0.9, 0.1), "b": (0.5, 0.5), "c": (0.1, 0.9), "d": (0.3, 0.3), "star": (0.6, 0.6)}
    for group, (sx, sy) in means.items():
        for seed, jitter in enumerate((-0.02, 0.0, 0.02)):
            rows.append({"model": "lenet", "recipe": group, "seed": seed, "x": sx + jitter, "y": sy - jitter})
    frame = pd.DataFrame(rows)
    fig = plots.pareto_panels(frame, x="x", y="y", group="recipe", fixed=["a", "b", "c", "d"],
                              highlight=["star"], xlabel="spatial", ylabel="adversarial")
    ax = fig.axes[0]
    front = [line for line in ax.get_lines() if line.get_label() == "front of the fixed recipes"]
    assert len(front) == 1
    xs, ys = front[0].get_data()
    # the front of the fixed means: a, b, c (d is dominated by b; the star is not fixed)
    assert {(round(x, 6), round(y, 6)) for x, y in zip(xs, ys)} >= {(0.1, 0.9), (0.5, 0.5), (0.9, 0.1)}
    assert (0.3, 0.3) not in {(round(x, 6), round(y, 6)) for x, y in zip(xs, ys)}
    assert len(ax.collections) >= 5                       # one scatter of seeds per group
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"a", "b", "c", "d", "star"} <= set(labels)
    assert ax.get_xlabel() == "spatial" and ax.get_ylabel() == "adversarial"
    plt.close(fig)


def test_pareto_panels_draws_a_recipe_whose_equal_seeds_average_an_ulp_outside_them():
    """Five seeds at 0.11 average (pandas) to 0.11000000000000001 > their max: the min–max bar is empty,
    not matplotlib's "'yerr' must not contain negative values" (it stopped the cpu book's chapter 05)."""
    import pandas as pd

    from invrob import plots

    assert pd.Series([0.11] * 5).mean() > 0.11  # the float fact this guards against
    frame = pd.DataFrame({"recipe": ["a"] * 5 + ["b"] * 5, "spatial": [0.11] * 5 + [0.2, 0.3, 0.25, 0.2, 0.3],
                          "adversarial": [0.11] * 5 + [0.5, 0.6, 0.55, 0.5, 0.6], "model": "wong"})
    fig = plots.pareto_panels(frame, x="spatial", y="adversarial", group="recipe", fixed=["a", "b"],
                              xlabel="spatial", ylabel="adversarial", group_label="recipe")
    assert fig is not None
