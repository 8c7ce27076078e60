"""AutoAttack (Croce & Hein, 2020), the field's reference robust accuracy, as an :class:`Attack`.

AutoAttack runs an ensemble of complementary parameter-free attacks one after
the other, each only on the points that every earlier one failed to fool:

- ``"standard"``: APGD-CE (100 steps), APGD-T (targeted DLR loss, 100 steps
  for each of the 9 most likely other classes), FAB-T (minimal-norm targeted)
  and Square (5000 queries, gradient-free — it catches gradient masking);
- ``"custom"``: any subset of ``apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square``
  with the *same* per-attack settings as the standard version, for cheaper runs
  (``["apgd-ce", "apgd-t"]`` is usually within a fraction of a point of it).

A point is robust at ε only when no component finds a misclassified point in
the ε-ball ∩ [0, 1]^d, so the ensemble's robust accuracy is never above that of
any one of its components on the same points.

The implementation is ``pyautoattack`` (Croce & Hein's own code on PyPI), not
torchattacks' ``AutoAttack``: on a cpu-profile StdCNN that ensemble reported
42% where its own APGD-T alone gives 20% (see issue 12). This wrapper gives it
the :class:`~invrob.attacks.Attack` contract: checked inputs, eval mode and
frozen parameters (:func:`~invrob.attacks.attack_mode`), images back on ``x``'s
device, the caller's global RNG untouched (the components reseed it), and its
logging kept off the console (the messages of its sanity checks — randomised
or dynamic defence, probability outputs, Square beating the gradient attacks —
are kept in :attr:`AutoAttack.messages`).
"""
from __future__ import annotations

import contextlib
import io
import logging

import torch
from torch import nn

from ..errors import InvrobError, check_choice, check_positive_int
from .base import Attack, _check_norm

__all__ = ["AutoAttack", "AUTOATTACK_ATTACKS", "AUTOATTACK_VERSIONS"]

AUTOATTACK_ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
AUTOATTACK_VERSIONS = ("standard", "custom")
STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
# Fewest classes each component works with: DLR needs the 3rd largest logit,
# targeted DLR the 4th; the targeted attacks need at least one other class.
MIN_CLASSES = {"apgd-ce": 2, "apgd-dlr": 3, "apgd-t": 4, "fab": 2, "fab-t": 2, "square": 2}


class _Collect(logging.Handler):
    """Keeps the messages of pyautoattack's logger instead of printing them."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _quiet(logger: logging.Logger):
    """Route ``logger`` (warnings and above) to a collector, and swallow stdout."""
    handler = _Collect()
    saved = (logger.handlers[:], logger.propagate, logger.level)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield handler.messages
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])


def _set_iterations(apgd, steps: int) -> None:
    """APGD's iterations and the step-size checkpoints it derives from them in its constructor
    (pyautoattack's ``APGDAttack.__init__``: 22%, 6% and 3% of the iterations, at least 1)."""
    apgd.n_iter = apgd.n_iter_orig = steps
    apgd.n_iter_2 = max(int(0.22 * steps), 1)
    apgd.n_iter_min = max(int(0.06 * steps), 1)
    apgd.size_decr = max(int(0.03 * steps), 1)


class AutoAttack(Attack):
    """``pyautoattack.AutoAttack`` (ℓ∞ or ℓ2) as an :class:`Attack`.

    Args:
        model: a classifier returning logits (images (N, C, H, W) in [0, 1]).
        eps: radius ε ≥ 0 (one number).
        norm: ``"linf"`` or ``"l2"``.
        version: ``"standard"`` (APGD-CE, APGD-T, FAB-T, Square) or ``"custom"``
            (the components named in ``attacks``, standard settings).
        seed: seeds every component (pyautoattack reseeds the global torch RNG
            with it; the caller's RNG state is restored afterwards), so one
            call is reproducible.
        batch_size: points per component call (memory, not results).
        attacks: with ``version="custom"``, a non-empty list out of
            :data:`AUTOATTACK_ATTACKS`, run in the order given.
        targets: how many target classes APGD-T and FAB-T try (the most likely
            other classes first); ``None``: the standard 9 (``C − 1`` with fewer
            classes). Fewer targets is a cheaper attack, so only with
            ``version="custom"``; :func:`invrob.attacks.evaluate` callers state it.
        steps: iterations of APGD-CE and APGD-T (``None``: the standard 100).
            Fewer is a cheaper, weaker attack, so only with ``version="custom"``
            (the smoke profile's regression runs; never a reported number).

    Models with fewer than 10 classes get ``C − 1`` target classes in APGD-T and
    FAB-T instead of 9; components that cannot run with ``C`` classes (DLR
    losses need 3, targeted DLR 4) raise :class:`~invrob.errors.InvrobError` —
    pick a custom subset then. Points misclassified clean come back unchanged,
    so do points no component fools. ``steps`` is 100 (APGD's iterations) unless
    given, ``restarts`` 1.
    """

    input_rules = {"ndim": 4}   # Square and FAB work on (N, C, H, W) images
    steps = 100
    restarts = 1

    def __init__(self, model: nn.Module, eps: float, norm: str = "linf", version: str = "standard",
                 seed: int = 0, batch_size: int = 500, attacks=None, targets: int | None = None,
                 steps: int | None = None):
        super().__init__(model, eps)
        self.norm = _check_norm(norm)
        self.version = check_choice(version, AUTOATTACK_VERSIONS, "version")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvrobError(f"seed must be an integer, got {seed!r}")
        self.seed = seed
        self.batch_size = check_positive_int(batch_size, "batch_size")
        if self.version == "standard":
            if attacks is not None:
                raise InvrobError("attacks is only for version='custom': the standard version runs "
                                  f"{', '.join(STANDARD)}")
            self.attacks = STANDARD
        else:
            if isinstance(attacks, str) or not attacks:
                raise InvrobError("version='custom' needs attacks, a non-empty list out of "
                                  f"{', '.join(AUTOATTACK_ATTACKS)}; got {attacks!r}")
            names = [check_choice(a, AUTOATTACK_ATTACKS, "attack in attacks") for a in attacks]
            if len(set(names)) != len(names):
                raise InvrobError(f"attacks lists a component twice: {names}")
            self.attacks = tuple(names)
        if targets is not None:
            check_positive_int(targets, "targets")
            if self.version == "standard":
                raise InvrobError("targets is only for version='custom': the standard version tries 9")
        self.targets = targets
        if steps is not None:
            check_positive_int(steps, "steps")
            if self.version == "standard":
                raise InvrobError("steps is only for version='custom': the standard version runs APGD for 100")
            self.steps = steps
        self.messages: list[str] = []   # pyautoattack's warnings from the last call

    @property
    def name(self) -> str:
        suffix = "-L2" if self.norm == "l2" else ""
        if self.version == "standard":
            return f"AutoAttack{suffix}"
        top = "" if self.targets is None else f", {self.targets} targets"
        steps = "" if self.steps == AutoAttack.steps else f", {self.steps} steps"
        return f"AutoAttack{suffix}({'+'.join(self.attacks)}{top}{steps})"

    def __repr__(self) -> str:
        return f"AutoAttack(eps={self.eps}, norm={self.norm!r}, version={self.version!r}, " \
               f"attacks={list(self.attacks)}, targets={self.targets}, steps={self.steps}, seed={self.seed})"

    def _build(self, device: torch.device, classes: int, model: nn.Module | None = None):
        from pyautoattack import AutoAttack as _AutoAttack  # heavy import, only when it runs

        too_few = [a for a in self.attacks if classes < MIN_CLASSES[a]]
        if too_few:
            raise InvrobError(f"{', '.join(too_few)} cannot attack a model with {classes} classes "
                              f"(needs {max(MIN_CLASSES[a] for a in too_few)}): use "
                              f"version='custom' with attacks out of "
                              f"{[a for a in AUTOATTACK_ATTACKS if MIN_CLASSES[a] <= classes]}")
        # Built with the standard settings (1 APGD restart, 9 targets, 1 FAB
        # restart, 5000 Square queries), then the component list replaced: a
        # pyautoattack "custom" object would keep its constructor defaults
        # (5 APGD and FAB restarts), i.e. a different, slower attack.
        aa = _AutoAttack(self.model if model is None else model, eps=float(self.eps), norm={"linf": "Linf", "l2": "L2"}[self.norm],
                         version="standard", device=device, seed=self.seed)
        aa.attacks_to_run = list(self.attacks)
        aa.version = self.version
        aa.verbose = False
        targets = min(9 if self.targets is None else self.targets, classes - 1)
        aa.apgd_targeted.n_target_classes = targets
        aa.fab.n_target_classes = targets
        for apgd in (aa.apgd, aa.apgd_targeted):
            _set_iterations(apgd, self.steps)
        return aa

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0 or len(x) == 0:
            return x.clone()
        with torch.no_grad():
            classes = int(self.model(x[:1]).shape[1])
        # pyautoattack computes in float32 (it allocates float32 buffers): a float64 model
        # (the smoke profile's) is attacked through a float32 copy, and the adversarial
        # images come back in the caller's dtype, projected again below.
        model, x_run = self.model, x
        if x.dtype != torch.float32:
            import copy

            model, x_run = copy.deepcopy(self.model).float(), x.float()
        # Built per call: the model may have moved device since this attack was built.
        aa = self._build(x.device, classes, model)
        devices = [x.device] if x.device.type == "cuda" else []
        default = torch.get_default_dtype()  # its fresh tensors follow the default: float32 while it runs
        try:
            torch.set_default_dtype(torch.float32)
            with torch.random.fork_rng(devices=devices), _quiet(aa.logger) as messages:
                x_adv, _ = aa.run_standard_evaluation(x_run, y, batch_size=self.batch_size)
        finally:
            torch.set_default_dtype(default)
        self.messages = messages
        x_adv = x_adv.to(x.dtype)
        # Guard the contract against any component's rounding: inside the box, and
        # for ℓ∞ inside the ε-ball (pyautoattack already projects; this is a no-op then).
        x_adv = x_adv.detach().clamp(0.0, 1.0)
        if self.norm == "linf":
            x_adv = torch.minimum(torch.maximum(x_adv, x - self.eps), x + self.eps)
        return x_adv
