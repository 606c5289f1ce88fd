import numpy as np
import pytest
import torch

from pyro_lfi.diagnostics import c2st


def _gauss(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    return shift + scale * np.random.default_rng(seed).normal(size=(n, d))


def test_same_distribution_is_chance():
    acc = c2st(_gauss(600, 2, 1), _gauss(600, 2, 2))
    # Standard error of an accuracy over 1200 test points is ~0.014.
    assert abs(acc - 0.5) < 0.06


def test_separated_distributions_are_perfectly_classified():
    acc = c2st(_gauss(300, 2, 1), _gauss(300, 2, 2, shift=10.0))
    assert acc > 0.99


def test_moderate_shift_is_detected_and_fast_agrees():
    a, b = _gauss(1000, 2, 1), _gauss(1000, 2, 2, shift=0.5)
    # Bayes accuracy for a shift of 0.5 in every coordinate: Phi(0.5 * sqrt(2) / 2) = 0.638.
    slow = c2st(a, b, classifier="mlp")
    fast = c2st(a, b, classifier="fast")
    assert 0.6 < slow < 0.68
    assert abs(fast - slow) < 0.02


@pytest.mark.slow
def test_fast_agrees_on_scale_difference_in_higher_dimension():
    a, b = _gauss(1000, 4, 3), _gauss(1000, 4, 4, scale=1.4)
    slow = c2st(a, b, classifier="mlp")
    fast = c2st(a, b, classifier="fast")
    assert slow > 0.6
    assert abs(fast - slow) < 0.03


def test_deterministic_and_accepts_torch_tensors():
    a, b = _gauss(300, 3, 5), _gauss(300, 3, 6, shift=0.3)
    first = c2st(a, b, seed=3, classifier="fast")
    assert c2st(torch.from_numpy(a), torch.from_numpy(b).float(), seed=3, classifier="fast") == pytest.approx(
        first, abs=1e-3
    )
    assert c2st(a, b, seed=3, classifier="fast") == first


def test_dict_input_is_flattened_in_sorted_key_order():
    a = _gauss(400, 3, 7)
    b = _gauss(400, 3, 8, shift=0.4)
    expected = c2st(a, b, classifier="fast")
    # Key order of insertion differs between the dicts; sorted order is ("loc", "scale").
    da = {"scale": a[:, 1:].reshape(400, 2, 1), "loc": a[:, 0]}
    db = {"loc": b[:, 0], "scale": torch.from_numpy(b[:, 1:].reshape(400, 2, 1))}
    assert c2st(da, db, classifier="fast") == pytest.approx(expected, abs=1e-9)
    # Swapping the roles of the sets (z-scoring now uses b) still detects the shift.
    assert c2st({"z": b}, {"z": a}, classifier="fast") > 0.55


def test_max_samples_subsamples():
    a, b = _gauss(5000, 2, 9), _gauss(5000, 2, 10, shift=10.0)
    assert c2st(a, b, max_samples=200, classifier="fast") > 0.99
    with pytest.raises(ValueError, match="too few samples"):
        c2st(a, b, max_samples=3)


@pytest.mark.parametrize(
    ("a", "b", "error", "match"),
    [
        (np.zeros((50, 2)), np.zeros((50, 3)), ValueError, "dimension"),
        (np.zeros((50,)), np.zeros((50,)), ValueError, r"shape \[n, d\]"),
        (np.zeros((4, 2)), np.zeros((50, 2)), ValueError, "too few samples"),
        (np.full((50, 2), np.nan), np.zeros((50, 2)), ValueError, "non-finite"),
        (np.zeros((50, 2)), np.full((50, 2), np.inf), ValueError, "non-finite"),
        ({"x": np.zeros((50, 2))}, np.zeros((50, 2)), TypeError, "both be dicts"),
        ({"x": np.zeros((50, 2))}, {"y": np.zeros((50, 2))}, ValueError, "different keys"),
        ({"x": np.zeros((50, 2))}, {"x": np.zeros((50, 1, 2))}, ValueError, "event shape"),
        ({"x": np.zeros((50, 2)), "y": np.zeros(40)}, {"x": np.zeros((50, 2))}, ValueError, "same number"),
        ([[0.0, 1.0]] * 50, np.zeros((50, 2)), TypeError, "torch tensor, numpy array"),
    ],
)
def test_errors(a, b, error, match):
    with pytest.raises(error, match=match):
        c2st(a, b)


def test_bad_options():
    a = _gauss(50, 2, 0)
    with pytest.raises(ValueError, match="classifier"):
        c2st(a, a, classifier="svm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_folds"):
        c2st(a, a, n_folds=1)
    # The fast classifier's early-stopping split needs at least 20 rows per set.
    with pytest.raises(ValueError, match="too few samples"):
        c2st(a[:19], a, classifier="fast")
    assert 0.0 <= c2st(a[:20], a, classifier="fast", n_folds=2) <= 1.0
