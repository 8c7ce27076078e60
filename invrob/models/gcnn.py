"""Group-equivariant CNNs (e2cnn) whose logits are invariant to the group.

A GCNN lifts the image (one trivial field per colour channel) to regular
feature fields of a group G — C4 (``p4``, 90° rotations), C8 (``p8``, 45°) or
D4 (``d4`` = p4m, 90° rotations and flips) — with G-steerable convolutions,
so each layer is *equivariant*: rotating the input permutes the feature maps,

    f(g · x) = g · f(x)      for g in G.

After the last conv, group pooling (max over the |G| channels of each field)
makes the features invariant to G, and a global spatial max makes them
invariant to where in the image they sit, so the logits satisfy
``model(rot90(x)) == model(x)`` up to float error (and ``model(flip(x))`` for D4).
For C8 only the 90° rotations are exact: 45° rotations do not map the pixel
grid onto itself.

The conv layout is the one StdCNN uses (:mod:`.layout`); the number of fields
is chosen so that both have about the same number of parameters.
"""
from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections import Counter, defaultdict
from typing import Sequence

import torch
from e2cnn import gspaces
from e2cnn import nn as enn
from torch import nn

from .normalize import Normalize

#: The groups by registry suffix, each a factory for its e2cnn gspace.
GROUPS = {
    "p4": lambda: gspaces.Rot2dOnR2(N=4),
    "p8": lambda: gspaces.Rot2dOnR2(N=8),
    "d4": lambda: gspaces.FlipRot2dOnR2(N=4),
}


@contextlib.contextmanager
def quiet_e2cnn():
    """Silence e2cnn 0.2.3's deprecation chatter (uint8 masks, ndarray.tostring) while it builds bases."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="indexing with dtype torch.uint8", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"tostring\(\) is deprecated", category=DeprecationWarning)
        yield


class CachedR2Conv(enn.R2Conv):
    """e2cnn's ``R2Conv`` with a safe eval-mode filter cache.

    e2cnn expands the filter from its basis coefficients at every forward in
    train mode and caches it on ``.eval()``. Its cache, though, is a
    *persistent* buffer that carries the autograd graph of the expansion, so
    (i) a state_dict saved in one mode does not load into a model in the other
    (``filter`` missing / unexpected), (ii) loading weights into an eval model
    leaves a stale filter, and (iii) ``copy.deepcopy`` of an eval model fails.
    Here the cache is a detached, non-persistent buffer, rebuilt lazily
    whenever the parameters changed since it was built (their storage or their
    in-place version counter — bumped by ``load_state_dict`` and optimiser
    steps alike). Gradients w.r.t. the *input* flow in eval mode as usual; the
    parameters get no gradient in eval mode (train in train mode).
    """

    _CACHE = ("filter", "expanded_bias")

    def __init__(self, *args, initialize: bool = True, **kwargs):
        with quiet_e2cnn():
            super().__init__(*args, initialize=False, **kwargs)
        if initialize:
            with torch.no_grad():
                self.weights.copy_(he_variances(self.basisexpansion) * torch.randn_like(self.weights))
        for name in self._CACHE:  # e2cnn registered zero placeholders: keep them out of state_dict
            if self._buffers.get(name) is not None:
                self.register_buffer(name, self._buffers[name], persistent=False)
        self._cache_key = None

    def _param_key(self):
        # A cache built under torch.inference_mode is an inference tensor, which autograd
        # refuses later (input gradients for attacks): the mode is part of the key.
        return (torch.is_inference_mode_enabled(),) + tuple(
            (p.data_ptr(), p._version, p.device, p.dtype) for p in (self.weights, self.bias) if p is not None)

    @torch.no_grad()
    def _refresh_cache(self) -> None:
        filt, bias = self.expand_parameters()
        self.register_buffer("filter", filt, persistent=False)
        if bias is not None:
            self.register_buffer("expanded_bias", bias, persistent=False)
        self._cache_key = self._param_key()

    def train(self, mode: bool = True):
        # Skip R2Conv.train (its persistent, graph-carrying cache); caching is lazy in forward.
        return super(enn.R2Conv, self).train(mode)

    def forward(self, input: enn.GeometricTensor) -> enn.GeometricTensor:
        if not self.training and self._cache_key != self._param_key():
            self._refresh_cache()
        return super().forward(input)


def he_variances(expansion) -> torch.Tensor:
    """The scales of e2cnn's generalized He init (``e2cnn.nn.init``), computed fast.

    e2cnn loops in Python over every basis element of the layer (≈20 s to build
    the CIFAR-10 GCNN). When the input and the output are each made of copies of
    one representation (all layers here), the scales repeat per (out field,
    in field) block: the basis element ``b`` of a block, from input irrep ``ρ``
    into output irrep slot ``s``, gets ``1 / sqrt(#irrep types into s ·
    n_in · #elements of type ρ into s)``, with ``n_in`` the number of input
    fields. Weights are stored out field → in field → block element, so the
    block pattern tiles. Anything else falls back to e2cnn's own loop. The
    result equals e2cnn's (tested), and so does the init for the same seed.
    """
    pairs = getattr(expansion, "_representations_pairs", None)
    in_type, out_type = expansion._in_type, expansion._out_type
    if (pairs is None or len(pairs) != 1 or len({r.name for r in in_type.representations}) != 1
            or len({r.name for r in out_type.representations}) != 1):
        from e2cnn.nn.init import _generalized_he_init_variances
        return _generalized_he_init_variances(expansion)
    block = getattr(expansion, f"block_expansion_{pairs[0]}")
    info = [(a["in_irrep"], a["out_irrep_idx"]) for a in block.get_basis_info()]
    types_into = defaultdict(set)
    for rho, slot in info:
        types_into[slot].add(rho)
    count = Counter(info)
    n_in, n_out = len(in_type), len(out_type)
    scale = torch.tensor([1.0 / math.sqrt(len(types_into[slot]) * n_in * count[(rho, slot)])
                          for rho, slot in info])
    return scale.repeat(n_out * n_in)


@functools.lru_cache(maxsize=None)
def fields_per_channel(group: str, kernel: int = 3) -> float:
    """How many regular fields of ``group`` cost as many parameters as one plain channel.

    A plain ``k×k`` conv has ``k²`` weights per (in, out) channel pair; a
    regular→regular steerable conv has ``dim`` (the size of e2cnn's
    band-limited basis, e.g. 24 for C4 and 48 for C8/D4 with k = 3) per field
    pair. Both scale quadratically with width, so ``f`` fields match
    ``c = f · sqrt(dim / k²)`` channels.
    """
    space = GROUPS[group]()
    regular = enn.FieldType(space, [space.regular_repr])
    with quiet_e2cnn():
        dim = enn.R2Conv(regular, regular, kernel, bias=False, initialize=False).basisexpansion.dimension()
    return math.sqrt(kernel * kernel / dim)


class GCNN(nn.Module):
    """Equivariant convs per ``layout``, then group pool, global max pool, linear head.

    ``width`` is the channel count of the StdCNN this GCNN is compared with;
    the first block gets ``round(width · fields_per_channel(group))`` regular
    fields (at least one) and a step ``(k, m)`` gets ``m`` times that.
    """

    def __init__(self, group: str, layout: Sequence, width: int, mean: Sequence[float],
                 std: Sequence[float], num_classes: int = 10):
        super().__init__()
        self.normalize = Normalize(mean, std)  # first child: models see [0, 1] pixels
        self.group = group
        space = GROUPS[group]()
        self.in_type = enn.FieldType(space, len(mean) * [space.trivial_repr])
        base = max(1, round(width * fields_per_channel(group)))
        layers: list[enn.EquivariantModule] = []
        ftype = self.in_type
        for step in layout:
            if step == "M":
                layers.append(enn.PointwiseMaxPool(ftype, 2))
                continue
            kernel, mult = step
            out = enn.FieldType(space, mult * base * [space.regular_repr])
            layers += [CachedR2Conv(ftype, out, kernel, padding=kernel // 2, bias=False),
                       enn.InnerBatchNorm(out), enn.ReLU(out, inplace=True)]
            ftype = out
        self.features = enn.SequentialModule(*layers)
        self.group_size = space.regular_repr.size
        self.fc = nn.Linear(len(ftype), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = enn.GeometricTensor(self.normalize(x), self.in_type)
        h = self.features(h).tensor
        # Group pooling: the max over each regular field's |G| channels, invariant per pixel.
        # The same values as e2cnn's GroupPooling, which always returns float32; this
        # keeps the input's dtype (float64 smoke runs are reproducible across CPUs).
        n, c, height, width = h.shape
        h = h.view(n, c // self.group_size, self.group_size, height, width).amax(2)
        return self.fc(h.amax(dim=(2, 3)))
