"""The trade-off chapter's recipes and its training grid (notebook 05), for :mod:`~invrob.studies.tradeoff`.

A **recipe** is data, not code: the :class:`~invrob.train.TrainConfig` fields that differ from
the profile's common ones (:data:`RECIPES` on MNIST, :data:`CIFAR_RECIPES` on CIFAR-10, the
same names at each dataset's three ε levels). :func:`part` reads one dataset's settings out of
a profile's (CIFAR-10's are its ``cifar_*`` keys), :func:`configs` builds the grid (model ×
recipe × seed), :func:`curriculum` CuSP's stages and :func:`recipe_of` names the recipe a
config was built from. Nothing here imports the rest of the study: its measures, claims and
the study module itself all read the recipes from here.
"""
from __future__ import annotations

CURRICULUM = "CuSP"
WORST_CASE = "worst-of-10 spatial"
REGULARISED = "worst-of-10 + regulariser"
_WORST = {"k": 10, "max_angle": 30.0, "max_shift": 3.0}  # Engstrom et al.'s worst of 10 in ±30°, ±3 px


def _recipes(levels, name) -> dict:
    """The recipes at one dataset's three ε levels (``name(ε)``: how the level is written).

    Each recipe: the TrainConfig fields that differ from the profile's common ones.
    CuSP's stages follow the authors' CIFAR-10 schedule (±120°, 2/255) → (±150°, 4/255)
    → (±180°, 8/255), i.e. ε at 1/4, 1/2 and 1 of the largest level, switching where
    the authors' learning rate drops (their epochs 75 and 90 of 1–120, i.e. after 74 and
    89 of 120 epochs): :func:`curriculum`.
    """
    final = levels[-1]
    return {
        "natural": dict(),
        "rotation 30°": dict(theta=30.0),
        "rotation 90°": dict(theta=90.0),
        "rotation 180°": dict(theta=180.0),
        **{f"adversarial ε={name(e)}": dict(eps=e, warmup=True) for e in levels},
        f"joint 180°, ε={name(final)}": dict(theta=180.0, eps=final, warmup=True),
        WORST_CASE: dict(spatial_attack=dict(_WORST)),
        # Yang et al.: the same worst case plus their invariance regulariser (λ = 1, not tuned)
        REGULARISED: dict(spatial_attack={**_WORST, "invariance": 1.0}),
        CURRICULUM: dict(curriculum=True),
    }


RECIPES = _recipes((0.1, 0.2, 0.3), lambda e: f"{e:g}")  # MNIST (LeNet, p4 GCNN)
# CIFAR-10 (VGG16): the authors' recipes (the 90° rotation range is the MNIST cpu profile's, see tradeoff.SETTINGS)
CIFAR_RECIPES = {name: recipe for name, recipe in _recipes((2 / 255, 4 / 255, 8 / 255), lambda e: f"{round(e * 255)}/255").items()
                 if name != "rotation 90°"}
RECIPES_OF = {"mnist": RECIPES, "cifar10": CIFAR_RECIPES}
DATASET_LABELS = {"mnist": "MNIST", "cifar10": "CIFAR-10"}


def part(settings, dataset: str = "mnist"):
    """One dataset's settings: MNIST's are the profile's own keys, CIFAR-10's its ``cifar_*`` keys
    (the rest — batch size, test points, attacks, grids — shared)."""
    from types import SimpleNamespace

    from ..errors import check_choice

    check_choice(dataset, RECIPES_OF, "dataset")
    values = {k: v for k, v in vars(settings).items() if not k.startswith("cifar_")}
    if dataset == "cifar10":
        values.update({k[len("cifar_"):]: v for k, v in vars(settings).items() if k.startswith("cifar_")})
    return SimpleNamespace(**values, dataset=dataset)


def configs(settings, dataset: str = "mnist") -> list:
    """Every model × recipe × seed of ``dataset`` (the profile's ``recipes`` or ``cifar_recipes``,
    names of :data:`RECIPES` or :data:`CIFAR_RECIPES`)."""
    from ..train import TrainConfig
    from ..errors import check_choice

    S = part(settings, dataset)
    recipes = RECIPES_OF[dataset]
    common = dict(dataset=dataset, epochs=S.epochs, batch_size=S.batch_size, optimizer=S.optimizer, lr=S.lr,
                  lr_schedule=S.lr_schedule,
                  weight_decay=S.weight_decay, attack_steps=S.attack_steps)
    if S.attack_alpha is not None:
        common["attack_alpha"] = S.attack_alpha
    if S.lr_milestones:  # the authors' step schedule; else the default cosine one
        common.update(lr_schedule="step", lr_milestones=tuple(S.lr_milestones))
    if S.width is not None:
        common["model_kwargs"] = {"width": S.width}
    out = []
    for m in S.models:
        for name in S.recipes:
            check_choice(name, recipes, f"{dataset} recipe")
            fields = dict(recipes[name])
            if fields.pop("curriculum", False):
                fields["schedule"] = curriculum(S)
            if fields.pop("warmup", False) and S.eps_warmup_epochs:
                fields["eps_warmup_epochs"] = S.eps_warmup_epochs
            out += [TrainConfig(model=m, seed=s, tag="", **common, **fields) for s in S.seeds]
    return out


def curriculum(settings) -> tuple:
    """CuSP's stages for ``settings.epochs`` epochs up to ``final_eps`` (:func:`_recipes`): the
    authors' switch points (after 74 and 89 of 120 epochs) scaled to the run, then, where the run
    has room for three stages of :data:`invrob.gates.MIN_STAGE_EPOCHS` epochs, moved just enough
    that each lasts that long (6 epochs: 2, 2 and 2, where scaling alone gives 4, 1 and 1; 20 and
    30 epochs keep the scaled 12, 3, 5 and 19, 3, 8). At 120 epochs up to 8/255 they are the
    authors' (:data:`invrob.train.CUSP_SCHEDULE`)."""
    from ..gates import MIN_STAGE_EPOCHS as m

    e, final = settings.epochs, settings.final_eps
    first, second = (max(k, int(e * start / 120 + 0.5)) for k, start in ((1, 74), (2, 89)))
    if second <= first:
        second = first + 1
    if e >= 3 * m:
        first = min(max(first, m), e - 2 * m)
        second = min(max(second, first + m), e - m)
    stages = [(0, 120.0, final / 4), (first, 150.0, final / 2), (second, 180.0, final)]
    return tuple(s for s in stages if s[0] < e)


def recipe_of(config) -> str:
    """The name in :data:`RECIPES` (:data:`CIFAR_RECIPES`) a config was built from."""
    if config.schedule is not None:
        return CURRICULUM
    if config.spatial_attack is not None:
        return REGULARISED if config.spatial_attack.get("invariance") else WORST_CASE
    for name, fields in RECIPES_OF[config.dataset].items():
        want = (fields.get("theta", 0.0), fields.get("eps", 0.0))
        if not fields.get("curriculum") and "spatial_attack" not in fields and \
                (config.theta, config.eps) == want:
            return name
    return f"θ={config.theta:g}°, ε={config.eps:g}"
