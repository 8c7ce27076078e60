"""Which models chapter 07 measures (notebook 07), for :mod:`~invrob.studies.certified`.

The chapter trains none: it reuses the models of chapters 01, 03 and 05 (:data:`SOURCES`), each
read back from the shared checkpoint folder through its own study's training grid.
:func:`source_configs` cuts each source's grid down to the chapter's settings,
:func:`sources` says which grids hold each model, :func:`reuse` loads them (each once),
:func:`tags_of` gives a model's tags in every table of the chapter (:data:`TAGS`) and
:func:`inventory` the chapter's table of model families.
"""
from __future__ import annotations

from ..errors import InvrobError
from .rules import label
from .tradeoff_recipes import recipe_of as tradeoff_recipe

SOURCES = ("invariance", "adversarial", "tradeoff")  # the studies whose models are reused, in chapter order
CHAPTERS = {"invariance": "01", "adversarial": "03", "tradeoff": "05"}
TAGS = ("model", "dataset", "theta", "eps_train", "seed", "recipe", "source")


def recipe_of(config) -> str:
    """The recipe name of a reused model: chapter 05's names (:data:`invrob.studies.tradeoff.RECIPES`)
    where a config is one of its recipes, else ``natural``, ``rotation θ°`` or ``adversarial ε=…``
    (the names chapter 05 gives the same training), so the quality gates find every model."""
    if config.schedule is not None or config.spatial_attack is not None or (config.theta and config.eps):
        return tradeoff_recipe(config)
    if config.theta:
        return f"rotation {config.theta:g}°"
    if config.eps:
        return f"adversarial ε={config.eps:g}"
    return "natural"


def _source_settings(settings, source: str):
    """The source study's settings at this profile (the checkpoints it wrote were trained with them)."""
    from . import get

    return get(source).settings(settings.profile)


def source_configs(settings) -> dict:
    """``{source study: its configs this chapter reuses}``: each study's own grid at the profile,
    cut down to the models, θ, ε, recipes and seeds of ``settings``. A subset that names a model
    the source does not train is one :class:`InvrobError` line (this chapter trains nothing new)."""
    from . import get

    S = settings
    seeds = set(S.seeds)
    wanted = {
        "invariance": lambda c: c.model in S.invariance_models and c.theta in
        [float(t) for t in S.invariance_models[c.model]],
        "adversarial": lambda c: c.eps in [float(e) for e in S.eps_train],
        "tradeoff": lambda c: recipe_of(c) in S.recipes,
    }
    asked = {
        "invariance": {(m, float(t)) for m, ts in S.invariance_models.items() for t in ts},
        "adversarial": {float(e) for e in S.eps_train},
        "tradeoff": set(S.recipes),
    }
    keys = {"invariance": lambda c: (c.model, c.theta), "adversarial": lambda c: c.eps,
            "tradeoff": recipe_of}
    out = {}
    for source in SOURCES:
        grid = [c for c in get(source).configs(_source_settings(S, source)) if c.dataset == "mnist"]
        chosen = [c for c in grid if wanted[source](c) and c.seed in seeds]
        missing = asked[source] - {keys[source](c) for c in chosen}
        found_seeds = {c.seed for c in chosen}
        if missing or (chosen and seeds - found_seeds):
            what = ", ".join(sorted(str(m) for m in missing)) or f"seeds {sorted(seeds - found_seeds)}"
            raise InvrobError(f"chapter {CHAPTERS[source]} ({source} study) trains no {what} at the "
                              f"{S.profile} profile: this chapter reuses models, it trains none")
        out[source] = chosen
    return out


def sources(settings) -> dict:
    """``{config slug: "adversarial+tradeoff"}``: the studies whose grids hold each reused model."""
    found: dict[str, list[str]] = {}
    for source, configs in source_configs(settings).items():
        for c in configs:
            found.setdefault(c.slug(), []).append(source)
    return {slug: "+".join(names) for slug, names in found.items()}


def reuse(settings, checkpoint_dir, data_root=None, progress: bool = False):
    """Load every model this chapter measures from ``checkpoint_dir`` (the other chapters' folder):
    ``(trained, history)`` as :func:`invrob.experiments.train_all`, each model once (chapter 03's
    natural and adversarial nets are chapter 05's recipes too), in chapter order; ``history`` has
    the ``recipe`` column. A checkpoint that is missing is trained by ``train_all`` with its own
    study's recipe and data (the source chapter would train the same model)."""
    import pandas as pd

    from .. import experiments as ex

    trained, histories, seen, data = [], [], set(), {}
    for source, configs in source_configs(settings).items():
        fresh = [c for c in configs if c.slug() not in seen]
        if not fresh:
            continue
        seen.update(c.slug() for c in fresh)
        size = _source_settings(settings, source).train_size
        if size not in data:
            data[size] = ex.load_split("mnist", size, 1, data_root)[:2]
        pairs, history = ex.train_all(fresh, *data[size], checkpoint_dir, progress=progress)
        trained += pairs
        histories.append(history.assign(recipe=[recipe_of(c) for c in fresh for _ in range(c.epochs)]))
    return trained, pd.concat(histories, ignore_index=True)


def tags_of(config, source_of: dict) -> dict:
    """A model's tags in every table of the chapter: :data:`TAGS`."""
    from .. import experiments as ex

    return {**ex.tags(config), "recipe": recipe_of(config), "source": source_of.get(config.slug(), "")}


def inventory(trained, settings):
    """One row per family (model × recipe): the chapter it comes from, θ, ε, seeds."""
    import pandas as pd

    source_of = sources(settings)
    rows = [tags_of(c, source_of) for c, _ in trained]
    frame = pd.DataFrame(rows)
    frame["chapters"] = ["+".join(CHAPTERS[s] for s in src.split("+")) for src in frame["source"]]
    table = (frame.groupby(["model", "recipe"], sort=False)
             .agg(chapters=("chapters", "first"), theta=("theta", "first"), eps_train=("eps_train", "first"),
                  seeds=("seed", "nunique")).reset_index())
    table["model"] = table["model"].map(label)
    return table.rename(columns={"theta": "θ (°)", "eps_train": "ε"})
