"""Models: registry, shapes, gradients, checkpoints, exact GCNN invariance, parameter budgets."""
from __future__ import annotations

import copy
import functools
import io

import pytest
import torch

from invrob import models
from invrob.errors import InvrobError
from invrob.models import DATASETS, Normalize, build_model, count_parameters, model_names
from invrob.models.normalize import DATASET_STATS

# e2cnn 0.2.3 warns while building bases (the models silence it; the raw e2cnn layers here do not)
pytestmark = [pytest.mark.filterwarnings("ignore:indexing with dtype torch.uint8"),
              pytest.mark.filterwarnings("ignore:tostring")]

SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
# Narrow CIFAR-10 nets keep the tests fast; MNIST nets are small at their defaults.
SMALL = {("cifar10", name): {"width": 4} for name in ("stdcnn", "gcnn_p4", "gcnn_p8", "gcnn_d4", "resnet18", "vgg16")}
PAIRS = [(name, ds) for ds in DATASETS for name in model_names(ds)]
GCNNS = ("gcnn_p4", "gcnn_p8", "gcnn_d4")


@functools.lru_cache(maxsize=None)
def _built(name, dataset, seed):
    torch.manual_seed(seed)
    return build_model(name, dataset, **SMALL.get((dataset, name), {}))


def small(name, dataset, seed=0):
    """A fresh copy of the seeded model (e2cnn spends a while building bases, so build each once)."""
    return copy.deepcopy(_built(name, dataset, seed))


def images(dataset, n=4, seed=1):
    return torch.rand(n, *SHAPES[dataset], generator=torch.Generator().manual_seed(seed))


def warm_batch_norm(model, x):
    """One train-mode pass so eval-mode batch norm uses non-trivial running statistics."""
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def test_one_list_of_datasets():
    # invrob.data.DATASETS is the list; every per-dataset table covers exactly it.
    from invrob import data, models, train
    from invrob.models.layout import DEFAULT_WIDTH, LAYOUTS

    assert data.DATASETS == ("mnist", "cifar10")
    assert models.DATASETS is data.DATASETS and train.DATASETS is data.DATASETS
    for table in (DATASET_STATS, LAYOUTS, DEFAULT_WIDTH, data.IMAGE_SHAPES):
        assert tuple(table) == data.DATASETS
    assert data.IMAGE_SHAPES == SHAPES
    assert {ds for name in model_names() for ds in data.DATASETS if name in model_names(ds)} == set(data.DATASETS)
    with pytest.raises(InvrobError, match="unknown dataset 'svhn'; valid: mnist, cifar10"):
        models.normalize.dataset_stats("svhn")


def test_registry_lists_every_model():
    """The families the studies name are registered, and so is every ``MODELS`` a module of the
    package defines (a model added as one file is found, and then checked by every test here)."""
    import importlib
    import pkgutil

    assert {"stdcnn", "gcnn_p4", "gcnn_p8", "gcnn_d4", "lenet", "madry", "wong", "resnet18", "vgg16"} <= set(model_names())
    for info in pkgutil.iter_modules(models.__path__):
        for name, (datasets, _) in getattr(importlib.import_module(f"invrob.models.{info.name}"), "MODELS", {}).items():
            assert name in model_names() and all(name in model_names(ds) for ds in datasets)
    assert "resnet18" not in model_names("mnist") and "lenet" not in model_names("cifar10")
    assert {"resnet18", "vgg16"} <= set(model_names("cifar10")) and {"lenet", "wong"} <= set(model_names("mnist"))


def test_register_model_refuses_a_taken_name_and_bad_input():
    with pytest.raises(InvrobError, match="model name 'lenet' is taken"):
        models.register_model("lenet", "mnist", lambda dataset: None)
    with pytest.raises(InvrobError, match="unknown dataset 'svhn'"):
        models.register_model("new-net", "svhn", lambda dataset: None)
    with pytest.raises(InvrobError, match="not callable"):
        models.register_model("new-net", "mnist", None)


@pytest.mark.parametrize("name,dataset", PAIRS)
def test_logits_gradients_and_checkpoint_round_trip(name, dataset):
    model = small(name, dataset)
    assert (model.name, model.dataset) == (name, dataset)
    x = images(dataset)
    warm_batch_norm(model, x)

    # logits, and a non-zero input gradient in eval mode (what the attacks need)
    x_req = x.clone().requires_grad_(True)
    logits = model(x_req)
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(4))
    (grad,) = torch.autograd.grad(loss, x_req)
    assert grad.shape == x.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0

    # state_dict through bytes into a differently seeded twin: identical outputs
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    twin = small(name, dataset, seed=123).eval()
    with torch.no_grad():
        assert not torch.equal(twin(x), logits.detach())
        twin.load_state_dict(torch.load(io.BytesIO(buffer.getvalue())))
        assert torch.equal(twin(x), logits.detach())
    # rebuilt from its own attributes (what a checkpoint stores)
    assert type(build_model(model.name, model.dataset, **model.build_kwargs)) is type(model)


@pytest.mark.parametrize("name,dataset", [("stdcnn", "mnist"), ("gcnn_p4", "mnist"), ("lenet", "mnist")])
def test_init_is_deterministic_given_the_seed(name, dataset):
    a, b, c = (_built.__wrapped__(name, dataset, seed).state_dict() for seed in (7, 7, 8))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("name,dataset", PAIRS)
def test_first_module_normalizes_with_dataset_stats(name, dataset):
    model = small(name, dataset)
    first = next(model.children())
    assert isinstance(first, Normalize)
    mean, std = DATASET_STATS[dataset]
    assert torch.allclose(first.mean.flatten(), torch.tensor(mean))
    assert torch.allclose(first.std.flatten(), torch.tensor(std))


def test_normalize_maths_and_shape_check():
    norm = Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    x = torch.rand(2, 3, 4, 4)
    expected = (x[:, 1] - 0.4822) / 0.2435
    assert torch.allclose(norm(x)[:, 1], expected)
    with pytest.raises(InvrobError, match=r"\(N, 3, H, W\)"):
        norm(torch.rand(2, 1, 4, 4))
    with pytest.raises(InvrobError, match=r"\(N, 1, H, W\)"):
        build_model("stdcnn")(torch.rand(2, 3, 28, 28))


def relative_change(model, x, transform):
    with torch.no_grad():
        ref = model(x)
        return ((model(transform(x)) - ref).abs().max() / ref.abs().max()).item()


QUARTER_TURNS = {f"rot{90 * k}": (lambda x, k=k: torch.rot90(x, k, dims=(2, 3))) for k in (1, 2, 3)}


@pytest.mark.parametrize("name,dataset", [("gcnn_p4", "mnist"), ("gcnn_p4", "cifar10"),
                                          ("gcnn_p8", "mnist"), ("gcnn_d4", "mnist"), ("gcnn_d4", "cifar10")])
def test_gcnn_logits_invariant_to_quarter_turns(name, dataset):
    x = images(dataset)
    model = warm_batch_norm(small(name, dataset), x)
    changes = {turn: relative_change(model, x, rotate) for turn, rotate in QUARTER_TURNS.items()}
    assert max(changes.values()) < 1e-4, changes


@pytest.mark.parametrize("dataset", DATASETS)
def test_d4_invariant_to_flips_but_p4_is_not(dataset):
    x = images(dataset)
    flips = (lambda t: torch.flip(t, dims=(3,)), lambda t: torch.flip(t, dims=(2,)))
    d4 = warm_batch_norm(small("gcnn_d4", dataset), x)
    p4 = warm_batch_norm(small("gcnn_p4", dataset), x)
    for flip in flips:
        assert relative_change(d4, x, flip) < 1e-4
        assert relative_change(p4, x, flip) > 1e-3  # C4 has no reflections


@pytest.mark.parametrize("dataset", DATASETS)
def test_stdcnn_is_not_rotation_invariant(dataset):
    x = images(dataset)
    model = warm_batch_norm(small("stdcnn", dataset), x)
    changes = {turn: relative_change(model, x, rotate) for turn, rotate in QUARTER_TURNS.items()}
    assert min(changes.values()) > 1e-3, changes  # ≥ 10× the GCNN tolerance


@pytest.mark.parametrize("dataset,width", [("mnist", None), ("mnist", 16), ("cifar10", 16)])
@pytest.mark.parametrize("gcnn", GCNNS)
def test_stdcnn_and_gcnn_have_comparable_parameter_counts(dataset, width, gcnn):
    torch.manual_seed(0)
    std = count_parameters(build_model("stdcnn", dataset, width=width))
    g = count_parameters(build_model(gcnn, dataset, width=width))
    assert 0.7 < g / std < 1.3, (std, g)


def test_reference_nets_match_their_published_sizes():
    # LeNet (PyTorch MNIST example), Madry et al. MNIST net, CIFAR ResNet-18: well-known counts.
    assert count_parameters(build_model("lenet")) == 21_840
    assert count_parameters(build_model("madry")) == 3_274_634
    # Wong et al.'s fast-AT net: 16·16+16 + 32·16·16+32 + 1568·100+100 + 100·10+10
    assert count_parameters(build_model("wong")) == 166_406
    assert count_parameters(build_model("wong", width=2)) == 2 * 16 * 16 + 32 + 64 * 32 * 16 + 64 + 3136 * 200 + 200 + 2010
    assert count_parameters(build_model("resnet18", "cifar10")) == 11_173_962
    assert count_parameters(build_model("resnet18", "cifar10", width=8)) < 200_000


def test_vgg16_is_torchvisions_vgg16_bn_features_with_a_linear_head():
    """The authors' CuSP net (the common CIFAR ``VGG('VGG16')``): torchvision's VGG16-BN convolutions
    (an independent definition), then one linear layer from 512 features to 10 logits."""
    import torchvision

    ours = build_model("vgg16", "cifar10")
    reference = torchvision.models.vgg16_bn(weights=None).features
    assert [tuple(p.shape) for p in ours.features.parameters()] == [tuple(p.shape) for p in reference.parameters()]
    assert [type(m) for m in ours.features] == [type(m) for m in reference]
    assert count_parameters(ours) == count_parameters(reference) + 512 * 10 + 10 == 14_728_266
    assert count_parameters(build_model("vgg16", "cifar10", width=4)) < 100_000


@pytest.mark.parametrize("name", GCNNS)
def test_gcnn_eval_cache_follows_mode_switches_loads_and_copies(name):
    x = images("mnist")
    model = warm_batch_norm(small(name, "mnist"), x)
    with torch.no_grad():
        ref = model(x)  # eval: cached filters
        assert torch.allclose(model.train().eval()(x), ref, atol=1e-6)
        assert not any(k.endswith(("filter", "expanded_bias")) for k in model.state_dict())

        # a state_dict from an eval model loads into a *train* model and vice versa
        fresh = small(name, "mnist", seed=5)  # train mode
        fresh.load_state_dict(model.state_dict())
        assert torch.allclose(fresh.eval()(x), ref, atol=1e-6)
        other = small(name, "mnist", seed=9)
        other_ref = warm_batch_norm(other, x)(x)
        # loading into an eval model whose filters are already cached must not keep stale filters
        model.load_state_dict(other.train().state_dict())
        assert torch.allclose(model(x), other_ref, atol=1e-6)

        # deepcopy of an eval model (e2cnn's own cache carries an autograd graph and cannot be copied)
        assert torch.allclose(copy.deepcopy(model)(x), other_ref, atol=1e-6)

    # an optimiser step taken in eval mode is seen by the next eval forward (no stale filters)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for p in model.parameters():  # eval mode gives the conv weights no gradient: fake one
        p.grad = torch.randn_like(p)
    opt.step()
    reference = small(name, "mnist", seed=11)
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(model(x), reference.eval()(x), atol=1e-6)

    # a filter cached under inference_mode does not leak into autograd afterwards
    with torch.inference_mode():
        model(x)
    x_req = x.clone().requires_grad_(True)
    assert torch.autograd.grad(model(x_req).sum(), x_req)[0].abs().sum() > 0


def test_fast_he_init_matches_e2cnn():
    from e2cnn import gspaces
    from e2cnn import nn as enn
    from e2cnn.nn.init import _generalized_he_init_variances
    from invrob.models.gcnn import CachedR2Conv, he_variances

    for space in (gspaces.Rot2dOnR2(4), gspaces.FlipRot2dOnR2(4)):
        cases = [(enn.FieldType(space, 3 * [space.trivial_repr]), enn.FieldType(space, 2 * [space.regular_repr]), 3),
                 (enn.FieldType(space, 2 * [space.regular_repr]), enn.FieldType(space, 3 * [space.regular_repr]), 5)]
        for in_type, out_type, kernel in cases:
            conv = enn.R2Conv(in_type, out_type, kernel, initialize=False)
            assert torch.equal(he_variances(conv.basisexpansion),
                               _generalized_he_init_variances(conv.basisexpansion).float())
            torch.manual_seed(3)
            theirs = enn.R2Conv(in_type, out_type, kernel)
            torch.manual_seed(3)
            assert torch.equal(CachedR2Conv(in_type, out_type, kernel).weights, theirs.weights)


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="vgg99"), r"unknown model 'vgg99'; valid: stdcnn, gcnn_p4, .*resnet18"),
    (dict(name="stdcnn", dataset="imagenet"), r"unknown dataset 'imagenet'; valid: mnist, cifar10"),
    (dict(name="lenet", dataset="cifar10"), r"'lenet' is not defined for dataset 'cifar10'; it supports: mnist"),
    (dict(name="resnet18", dataset="mnist"), r"supports: cifar10"),
    (dict(name="madry", width=4), r"no option 'width'; valid: none"),
    (dict(name="stdcnn", depth=4), r"no option 'depth'; valid: width"),
    (dict(name="gcnn_p4", width=0), r"width must be a positive integer"),
])
def test_bad_requests_raise_one_line_invrob_errors(kwargs, match):
    with pytest.raises(InvrobError, match=match) as info:
        build_model(**kwargs)
    assert "\n" not in str(info.value)
    with pytest.raises(InvrobError, match="valid: mnist, cifar10"):
        model_names("imagenet")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["stdcnn", "gcnn_p4", "gcnn_d4", "resnet18", "vgg16"])
def test_models_run_on_cuda(name):
    dataset = "cifar10"
    x = images(dataset)
    model = warm_batch_norm(small(name, dataset), x)
    with torch.no_grad():
        ref = model(x)
        gpu = copy.deepcopy(model).cuda()
        out = gpu(x.cuda())
        assert torch.allclose(out.cpu(), ref, atol=1e-4, rtol=1e-3)
        if name.startswith("gcnn"):
            rotated = gpu(torch.rot90(x, 1, dims=(2, 3)).cuda())
            assert ((rotated - out).abs().max() / out.abs().max()).item() < 1e-4
    x_req = x.cuda().requires_grad_(True)
    (grad,) = torch.autograd.grad(gpu(x_req).sum(), x_req)
    assert grad.abs().sum() > 0
