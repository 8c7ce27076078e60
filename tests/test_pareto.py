"""invrob.pareto on hand-made points whose front is known (ties, duplicates, one point, lines)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from invrob.errors import InvrobError
from invrob.pareto import dominates, front_line, pareto_front, pareto_indices


def brute_force_front(points, maximize=(True, True)):
    """The definition, one pair at a time (an independent reference)."""
    sign = [1 if m else -1 for m in maximize]
    out = []
    for i, a in enumerate(points):
        dominated = False
        for j, b in enumerate(points):
            better_eq = all(s * b[k] >= s * a[k] for k, s in enumerate(sign))
            strictly = any(s * b[k] > s * a[k] for k, s in enumerate(sign))
            dominated |= better_eq and strictly
        out.append(not dominated)
    return np.array(out, dtype=bool)


CASES = {
    # name: (points, front mask when maximising both)
    "textbook": ([(0.9, 0.1), (0.5, 0.5), (0.1, 0.9), (0.4, 0.4), (0.2, 0.2), (0.5, 0.3)],
                 [True, True, True, False, False, False]),
    "single point": ([(0.3, 0.7)], [True]),
    "trade-off line": ([(0.0, 2.0), (1.0, 1.0), (2.0, 0.0)], [True, True, True]),
    "improving line": ([(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)], [False, False, True]),
    "tie in x": ([(1.0, 2.0), (1.0, 1.0), (0.0, 3.0)], [True, False, True]),
    "tie in y": ([(2.0, 1.0), (1.0, 1.0), (0.0, 0.5)], [True, False, False]),
    "duplicates on front": ([(1.0, 2.0), (1.0, 2.0), (2.0, 1.0), (0.5, 0.5), (0.5, 0.5)],
                            [True, True, True, False, False]),
    "all equal": ([(0.5, 0.5)] * 3, [True, True, True]),
    "one best": ([(0.2, 0.3), (0.9, 0.9), (0.5, 0.1), (0.9, 0.8)], [False, True, False, False]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_front_on_hand_made_points(name):
    points, expected = CASES[name]
    mask = pareto_front(points)
    assert mask.dtype == bool and mask.tolist() == expected
    assert mask.tolist() == brute_force_front(points).tolist()
    # Every point off the front is dominated by some point on it; none on it is dominated.
    for i, p in enumerate(points):
        beaten = [dominates(q, p) for q in points]
        assert any(beaten) == (not expected[i])


def test_directions_mirror_the_front():
    points = [(0.9, 0.1), (0.5, 0.5), (0.1, 0.9), (0.4, 0.4), (0.2, 0.2), (0.5, 0.3)]
    for maximize in itertools.product([True, False], repeat=2):
        mask = pareto_front(points, maximize)
        assert mask.tolist() == brute_force_front(points, maximize).tolist(), maximize
    # Minimising both: the lower-left staircase (smallest x, smallest y, and (0.2, 0.2) between).
    assert pareto_front(points, (False, False)).tolist() == [True, False, True, False, True, False]
    # Minimise x, maximise y: (0.1, 0.9) beats everything.
    assert pareto_front(points, (False, True)).tolist() == [False, False, True, False, False, False]


def test_random_points_agree_with_the_definition():
    rng = np.random.default_rng(0)
    for _ in range(20):
        # Coarse values: many ties and duplicates.
        points = rng.integers(0, 5, size=(int(rng.integers(1, 25)), 2)) / 4
        assert pareto_front(points).tolist() == brute_force_front(points.tolist()).tolist()


def test_dominates():
    assert dominates((1, 1), (0, 0)) and not dominates((0, 0), (1, 1))
    assert dominates((1, 1), (1, 0))                 # tie in x, better in y
    assert not dominates((1, 1), (1, 1))             # equal points do not dominate
    assert not dominates((2, 0), (0, 2)) and not dominates((0, 2), (2, 0))
    assert dominates((0, 0), (1, 1), maximize=(False, False))
    assert dominates((0, 1), (1, 0), maximize=(False, True))


def test_indices_follow_the_front():
    points = [(0.5, 0.5), (0.2, 0.2), (0.9, 0.1), (0.1, 0.9), (0.5, 0.5)]
    assert pareto_indices(points).tolist() == [3, 0, 4, 2]  # x ascending, duplicates in index order
    assert pareto_indices([(0.3, 0.7)]).tolist() == [0]
    assert pareto_indices(np.zeros((0, 2))).tolist() == []


def test_front_line_is_the_staircase():
    points = [(0.9, 0.1), (0.5, 0.5), (0.1, 0.9), (0.4, 0.4), (0.5, 0.5)]
    xs, ys = front_line(points)
    assert xs.tolist() == [0.1, 0.1, 0.5, 0.5, 0.9]
    assert ys.tolist() == [0.9, 0.5, 0.5, 0.1, 0.1]
    # Every vertex is dominated-or-equal to a front point, and every point lies on or below the line.
    front = np.asarray(points)[pareto_front(points)]
    for x, y in zip(xs, ys):
        assert any((f >= (x, y)).all() for f in front)
    for px, py in points:
        height = max(y for x, y in zip(xs, ys) if x >= px)
        assert py <= height
    # One point: one vertex. Minimising both: the staircase mirrors.
    assert [a.tolist() for a in front_line([(0.3, 0.7), (0.3, 0.7)])] == [[0.3], [0.7]]
    xs, ys = front_line([(0.1, 0.9), (0.5, 0.5), (0.9, 0.1), (0.8, 0.8)], maximize=(False, False))
    assert xs.tolist() == [0.9, 0.9, 0.5, 0.5, 0.1] and ys.tolist() == [0.1, 0.5, 0.5, 0.9, 0.9]
    assert [a.tolist() for a in front_line(np.zeros((0, 2)))] == [[], []]


@pytest.mark.parametrize("points, maximize, message", [
    ([(0.1, np.nan)], (True, True), "finite"),
    ([(0.1, np.inf)], (True, True), "finite"),
    ([(0.1, 0.2, 0.3)], (True, True), r"shape \(N, 2\)"),
    ([0.1, 0.2], (True, True), r"shape \(N, 2\)"),
    ("ab", (True, True), "points must"),
    ([(0.1, 0.2)], (True,), "pair of booleans"),
    ([(0.1, 0.2)], ("yes", "no"), "pair of booleans"),
])
def test_bad_input_is_one_clear_error(points, maximize, message):
    with pytest.raises(InvrobError, match=message):
        pareto_front(points, maximize)


@pytest.mark.parametrize("b, expected", [
    ((0.4, 0.4), True),     # the midpoint of (0, 1)–(1, 0) is (0.5, 0.5)
    ((0.5, 0.5), False),    # on the segment: equal to a mixture, not beaten by one
    ((0.5, 0.49), True),
    ((0.6, 0.6), False),    # beyond the hull
    ((0.0, 1.0), False),    # a point itself
    ((-0.1, 1.0), True),    # the point (0, 1) alone
])
def test_mixture_dominates_on_hand_made_points(b, expected):
    from invrob.pareto import mixture_dominates

    assert mixture_dominates([(0, 1), (1, 0)], b) is expected
    # mirrored directions give the mirrored answer
    assert mixture_dominates([(0, -1), (1, 0)], (b[0], -b[1]), maximize=(True, False)) is expected


def test_mixture_dominates_agrees_with_a_linear_program():
    """Independent reference: scipy's linprog over mixtures of *all* points (any number of them):
    maximise the smaller slack t subject to Σλ_i p_i ≥ b + t, Σλ = 1, λ ≥ 0; dominated iff it is
    feasible with t ≥ 0 and strictly better in one coordinate at the optimum of the summed slack."""
    from scipy.optimize import linprog

    from invrob.pareto import dominates, mixture_dominates

    rng = np.random.default_rng(0)
    for _ in range(300):
        pts = rng.uniform(0, 1, (rng.integers(1, 7), 2)).round(2)
        b = rng.uniform(0, 1, 2).round(2)
        n = len(pts)
        # feasibility of Σλ p ≥ b, then the largest total slack Σ(Σλ p − b)
        res = linprog(-pts.sum(1), A_ub=-pts.T, b_ub=-b, A_eq=np.ones((1, n)), b_eq=[1], bounds=[(0, 1)] * n)
        reference = res.status == 0 and -res.fun - b.sum() > 1e-9
        assert mixture_dominates(pts, b) == reference, (pts, b)
        if any(dominates(q, b) for q in pts):
            assert mixture_dominates(pts, b)


def test_hull_line_is_the_front_of_mixtures():
    from invrob.pareto import hull_line, mixture_dominates

    xs, ys = hull_line([(0, 1), (0.4, 0.4), (1, 0), (0.2, 0.1)])   # (0.4, 0.4) lies below the chord
    assert list(xs) == [0, 1] and list(ys) == [1, 0]
    xs, ys = hull_line([(1, 0), (0.6, 0.6), (0, 1)])
    assert list(xs) == [0, 0.6, 1] and list(ys) == [1, 0.6, 0]
    xs, ys = hull_line([(0.5, 0.5)])
    assert list(xs) == [0.5] and list(ys) == [0.5]
    # points just below the chain are beaten by a mixture, points just above it are not
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 1, (8, 2))
    hx, hy = hull_line(pts)
    for t in np.linspace(0.05, 0.95, 7):
        for k in range(len(hx) - 1):
            x, y = hx[k] + t * (hx[k + 1] - hx[k]), hy[k] + t * (hy[k + 1] - hy[k])
            assert mixture_dominates(pts, (x - 1e-6, y - 1e-6))
            assert not mixture_dominates(pts, (x + 1e-6, y + 1e-6))
    # mirrored directions mirror the line
    mx, my = hull_line(pts * [1, -1], maximize=(True, False))
    assert np.allclose(mx, hx) and np.allclose(my, -hy)


def test_mixture_pair_names_the_segment_of_the_hull():
    from invrob.pareto import hull_line, mixture_dominates, mixture_pair

    # The chapter's case: natural (a), adversarial (b), rotation (c) models, and a curriculum d
    # that a mixture of a and c also beats; the pair named is the hull's segment b–c, the
    # one the figure draws, not the first pair in table order.
    pts = [(0.021, 0.698), (0.037, 0.892), (0.556, 0.198)]
    d = (0.196, 0.452)
    assert mixture_dominates(pts[0::2], d)
    assert mixture_pair(pts, d) == (1, 2)
    assert mixture_pair(pts, (0.03, 0.8)) == (1, 1)       # point b alone dominates
    assert mixture_pair(pts, (0.3, 0.7)) is None          # beyond the hull
    # Complete: some pair exactly when some mixture dominates, and it is a hull segment
    # (or a hull vertex), in either direction of optimisation.
    rng = np.random.default_rng(2)
    for _ in range(300):
        pts = rng.uniform(0, 1, (rng.integers(1, 7), 2)).round(2)
        b = rng.uniform(0, 1, 2).round(2)
        for sign in ([1, 1], [1, -1]):
            maximize = (True, sign[1] > 0)
            pair = mixture_pair(pts * sign, b * sign, maximize)
            assert (pair is not None) == mixture_dominates(pts * sign, b * sign, maximize), (pts, b)
            if pair is not None:
                assert mixture_dominates(pts[list(pair)] * sign, b * sign, maximize)
                hx, hy = hull_line(pts * sign, maximize)
                vertices = [tuple(v) for v in np.c_[hx, hy]]
                i, j = (tuple(pts[k] * sign) for k in pair)
                assert i in vertices and j in vertices
                assert i == j or abs(vertices.index(i) - vertices.index(j)) == 1
