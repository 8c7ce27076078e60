"""invrob.transforms: translations and rotation + translation against scipy.ndimage, exact cases.

The independent reference is ``scipy.ndimage`` (``shift`` / ``affine_transform``,
``order=1``, ``cval=0``), which maps output index ``o`` to input index
``M o + offset`` in (row, column) coordinates. Two honest statements, both tested:

- with ``mode="grid-constant"`` (bilinear blending towards the zero outside,
  which is what ``grid_sample(padding_mode="zeros")`` does) the two agree at
  every pixel to float32 rounding (< 1e-5);
- with ``mode="constant"`` scipy reads 0 at any point outside ``[0, n − 1]``
  instead of blending, so the two agree (< 1e-5) wherever the source point lies
  inside the input and differ only in the one-pixel band where it does not.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from invrob.data import load_mnist
from invrob.errors import InvrobError
from invrob.rotations import rotate
from invrob.transforms import random_rotate_translate, random_transforms, rotate_translate, translate

TOL = 1e-5


@pytest.fixture(scope="module")
def digits():
    x, _ = load_mnist(train=False)
    return x[:6].clone()


def noise(n=4, c=2, h=20, w=20, seed=0, dtype=torch.float32):
    """Random images: non-zero up to the border, so the border conventions matter."""
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def roll_zero(img: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``torch.roll`` by (dy, dx) with the wrapped-around rows / columns set to zero."""
    out = torch.roll(img, shifts=(dy, dx), dims=(-2, -1)).clone()
    h, w = img.shape[-2:]
    if dy > 0:
        out[..., :min(dy, h), :] = 0
    elif dy < 0:
        out[..., max(h + dy, 0):, :] = 0
    if dx > 0:
        out[..., :, :min(dx, w)] = 0
    elif dx < 0:
        out[..., :, max(w + dx, 0):] = 0
    return out


def scipy_affine(img: np.ndarray, angle: float, dx: float, dy: float, mode: str) -> np.ndarray:
    """scipy's bilinear ``output(X, Y) = input(R⁻¹(X − dx, Y − dy))`` about the centre, one channel."""
    h, w = img.shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    # (row, col) = (Y, X): row' = c·Y + s·X, col' = −s·Y + c·X (the transpose of the (X, Y) matrix).
    matrix = np.array([[c, s], [-s, c]])
    offset = centre - matrix @ (centre + np.array([dy, dx]))
    return ndi.affine_transform(img.astype(np.float64), matrix, offset=offset, order=1, mode=mode, cval=0.0)


def source_inside(h, w, angle, dx, dy) -> np.ndarray:
    """(H, W) bool: does the output pixel read a point inside the input's extent [0, n − 1]²?"""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    big_x, big_y = j - (w - 1) / 2 - dx, i - (h - 1) / 2 - dy
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    col, row = c * big_x - s * big_y + (w - 1) / 2, s * big_x + c * big_y + (h - 1) / 2
    return (row >= 0) & (row <= h - 1) & (col >= 0) & (col <= w - 1)


# ------------------------------------------------------------------ whole-pixel shifts are exact

@pytest.mark.parametrize("shape", [(20, 20), (12, 17)])
def test_integer_shifts_are_bit_exact_roll_with_zero_fill(shape):
    h, w = shape
    x = noise(7, 3, h, w)
    shifts = torch.tensor([[0, 0], [1, 0], [0, -1], [3, -2], [-5, 4], [w + 2, 0], [-1, -h]])
    out = translate(x, shifts)
    for i, (dx, dy) in enumerate(shifts.tolist()):
        assert torch.equal(out[i], roll_zero(x[i], dx, dy)), (dx, dy)
    assert torch.equal(out[0], x[0])
    assert (out[5] == 0).all() and (out[6] == 0).all()   # shifted out of the frame entirely
    # Integral floats and numpy input are the same shifts.
    assert torch.equal(translate(x, shifts.double().numpy()), out)


def test_sign_convention_dx_right_dy_down():
    img = torch.zeros(1, 1, 9, 9)
    img[0, 0, 4, 4] = 1.0
    out = translate(img, (2, -1))[0, 0]             # two columns right, one row up
    assert out[3, 6] == 1.0 and out.sum() == 1.0
    half = translate(img, (0.5, 0.0))[0, 0]          # half a pixel right: split between columns 4, 5
    assert half[4, 4] == pytest.approx(0.5) and half[4, 5] == pytest.approx(0.5)


# ------------------------------------------------------------------ sub-pixel shifts vs scipy

@pytest.mark.parametrize("dx, dy", [(0.3, -1.7), (2.5, 0.0), (-0.25, 0.75), (-3.0, 1.5)])
def test_subpixel_translation_matches_scipy_shift(dx, dy):
    x = noise()
    out = translate(x, (dx, dy)).numpy()
    for n in range(len(x)):
        for c in range(x.shape[1]):
            img = x[n, c].numpy().astype(np.float64)
            grid = ndi.shift(img, (dy, dx), order=1, mode="grid-constant", cval=0.0)
            assert np.abs(out[n, c] - grid).max() < TOL
            const = ndi.shift(img, (dy, dx), order=1, mode="constant", cval=0.0)
            inside = source_inside(*img.shape, 0.0, dx, dy)
            assert np.abs(out[n, c] - const)[inside].max() < TOL
    # ... and the border band really is different under mode="constant" (the convention matters).
    img = x[0, 0].numpy().astype(np.float64)
    const = ndi.shift(img, (dy, dx), order=1, mode="constant", cval=0.0)
    assert np.abs(out[0, 0] - const).max() > 0.05


# ------------------------------------------------------------------ rotation + translation vs scipy

@pytest.mark.parametrize("angle, dx, dy", [(17.0, 0.0, 0.0), (-33.0, 2.5, 1.25), (30.0, -3.0, 3.0),
                                           (90.0, 0.5, 0.0), (-150.0, 1.0, -2.0), (0.0, 1.3, 0.4)])
@pytest.mark.parametrize("shape", [(20, 20), (14, 22)])
def test_rotate_translate_matches_scipy_affine_transform(angle, dx, dy, shape):
    x = noise(3, 1, *shape)
    out = rotate_translate(x, angle, (dx, dy)).numpy()[:, 0]
    inside = source_inside(*shape, angle, dx, dy)
    for n in range(len(x)):
        img = x[n, 0].numpy()
        assert np.abs(out[n] - scipy_affine(img, angle, dx, dy, "grid-constant")).max() < TOL
        assert np.abs(out[n] - scipy_affine(img, angle, dx, dy, "constant"))[inside].max() < TOL


def test_float64_matches_scipy_to_float64_rounding():
    x = noise(2, 1, 16, 16, dtype=torch.float64)
    out = rotate_translate(x, torch.tensor([23.0, -71.0], dtype=torch.float64),
                           torch.tensor([[0.7, -1.2], [-2.2, 0.1]], dtype=torch.float64))
    assert out.dtype == torch.float64
    for n, (angle, (dx, dy)) in enumerate([(23.0, (0.7, -1.2)), (-71.0, (-2.2, 0.1))]):
        ref = scipy_affine(x[n, 0].numpy(), angle, dx, dy, "grid-constant")
        assert np.abs(out[n, 0].numpy() - ref).max() < 1e-12


def test_digits_agree_with_scipy_everywhere(digits):
    # MNIST's black border: the two border conventions coincide, the whole image agrees.
    out = rotate_translate(digits, 12.0, (1.5, -2.25)).numpy()
    for n in range(len(digits)):
        ref = scipy_affine(digits[n, 0].numpy(), 12.0, 1.5, -2.25, "constant")
        assert np.abs(out[n, 0] - ref).max() < TOL


# ------------------------------------------------------------------ exact cases and consistency

def test_zero_shift_is_bit_identical_to_rotate(digits):
    angles = torch.tensor([0.0, 90.0, 37.0, -180.0, 12.5, 270.0])
    assert torch.equal(rotate_translate(digits, angles, (0.0, 0.0)), rotate(digits, angles))
    assert torch.equal(rotate_translate(digits, angles, torch.zeros(6, 2)), rotate(digits, angles))
    assert torch.equal(rotate_translate(digits, 17.0, (0, 0)), rotate(digits, 17.0))
    rect = noise(3, 1, 12, 17)
    assert torch.equal(rotate_translate(rect, 33.0, (0, 0)), rotate(rect, 33.0))


def test_quarter_turns_with_whole_shifts_are_exact(digits):
    out = rotate_translate(digits[:3], torch.tensor([90.0, -180.0, 270.0]), torch.tensor([[2, -1], [0, 3], [-4, 0]]))
    for i, (k, dx, dy) in enumerate([(1, 2, -1), (2, 0, 3), (3, -4, 0)]):
        assert torch.equal(out[i], roll_zero(torch.rot90(digits[i], k, dims=(1, 2)), dx, dy))


def test_rotation_comes_first_then_translation(digits):
    # One resampling of "rotate, then shift" = shifting the rotated image (whole-pixel shift:
    # exact), up to rounding; MNIST digits sit inside the frame, so no content is cut off.
    one = rotate_translate(digits, 25.0, (3, -2))
    two = translate(rotate(digits, 25.0), (3, -2))
    assert (one - two).abs().max() < TOL
    other_order = rotate(translate(digits, (3, -2)), 25.0)
    assert (one - other_order).abs().max() > 0.1   # the order matters: it is not a commuting pair


def test_translate_is_rotate_translate_at_zero_and_per_sample(digits):
    shifts = torch.tensor([[0.5, 0.0], [1, 1], [-2.5, 0.25], [0, 0], [3, -3], [0.1, -0.1]])
    out = translate(digits, shifts)
    assert torch.equal(out, rotate_translate(digits, 0.0, shifts))
    for i in range(len(digits)):  # one sample at a time = the batch (exact and interpolated mixed)
        alone = translate(digits[i:i + 1], shifts[i])
        assert (out[i] - alone[0]).abs().max() < 1e-6


def test_dtype_device_shape_and_gradient():
    x = noise(2, 3, 10, 10).requires_grad_(True)
    out = rotate_translate(x, 10.0, (0.5, -0.5))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    half = noise(2, 1, 8, 8).to(torch.float64)
    assert translate(half, (1, 0)).dtype == torch.float64
    empty = torch.zeros(0, 1, 8, 8)
    assert translate(empty, (1.5, 0)).shape == (0, 1, 8, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = noise(4, 1, 28, 28)
    shifts = torch.tensor([[0.5, 1.0], [2, 2], [-1.25, 0.0], [0, 0]])
    angles = torch.tensor([10.0, 90.0, -45.0, 0.0])
    cpu = rotate_translate(x, angles, shifts)
    gpu = rotate_translate(x.cuda(), angles.cuda(), shifts.cuda())
    assert gpu.device.type == "cuda" and (gpu.cpu() - cpu).abs().max() < 1e-5
    assert torch.equal(gpu.cpu()[1], cpu[1])  # the exact path is exact on every device


@pytest.mark.parametrize("call, message", [
    (lambda x: translate(x, (1.0,)), r"shape \(2,\) or \(4, 2\)"),
    (lambda x: translate(x, torch.zeros(3, 2)), r"shape \(2,\) or \(4, 2\)"),
    (lambda x: translate(x, (float("nan"), 0.0)), "finite"),
    (lambda x: translate(x, "left"), "pair"),
    (lambda x: rotate_translate(x, [1.0, 2.0], (0, 0)), "angles"),
    (lambda x: translate(x[0], (1, 0)), r"\(B, C, H, W\)"),
    (lambda x: translate(x.long(), (1, 0)), "float images"),
    (lambda x: random_transforms(3, 200.0, 1.0), "max_angle"),
    (lambda x: random_transforms(3, 10.0, -1.0), "max_shift"),
])
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(InvrobError, match=message):
        call(noise(4, 1, 8, 8))


def test_random_transforms_ranges_and_reproducibility():
    angles, shifts = random_transforms(2000, 30.0, 3.0, torch.Generator().manual_seed(0))
    assert angles.shape == (2000,) and shifts.shape == (2000, 2)
    assert angles.abs().max() <= 30 and shifts.abs().max() <= 3
    assert angles.abs().max() > 29 and shifts.abs().max() > 2.9 and shifts.min() < -2.9  # the whole range
    again = random_transforms(2000, 30.0, 3.0, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], angles) and torch.equal(again[1], shifts)
    x = noise(5, 1, 12, 12)
    out = random_rotate_translate(x, 30.0, 3.0, torch.Generator().manual_seed(1))
    a, s = random_transforms(5, 30.0, 3.0, torch.Generator().manual_seed(1))
    assert torch.equal(out, rotate_translate(x, a, s))
    assert torch.equal(random_rotate_translate(x, 0.0, 0.0), x)
