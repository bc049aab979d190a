"""Tests for weightless/lenet.py (numpy LeNet-300-100)."""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import pytest


from weightless import lenet as L
from weightless.experiments import datasets as D

EXPECTED_SHAPES = {
    "fc1.weight": (300, 784), "fc1.bias": (300,),
    "fc2.weight": (100, 300), "fc2.bias": (100,),
    "fc3.weight": (10, 100), "fc3.bias": (10,),
}


def _clusters(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten noisy prototypes in [0,1]^784: separable, but not trivially so per pixel."""
    protos = np.random.default_rng(1234).random((10, 784), dtype=np.float32)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=n)
    x = protos[y] + rng.normal(0.0, 0.6, size=(n, 784)).astype(np.float32)
    return np.clip(x, 0.0, 1.0).astype(np.float32), y.astype(np.int64)


def test_state_dict_names_shapes_dtypes() -> None:
    state = L.init_lenet300(0)
    assert list(state) == list(EXPECTED_SHAPES)
    for name, shape in EXPECTED_SHAPES.items():
        assert state[name].shape == shape and state[name].dtype == np.float32
    assert not any(state[n].any() for n in state if n.endswith(".bias"))


def test_init_is_deterministic() -> None:
    a, b, c = L.init_lenet300(7), L.init_lenet300(7), L.init_lenet300(8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["fc1.weight"], c["fc1.weight"])


def test_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(0)
    state = {k: v.astype(np.float64) for k, v in L.init_lenet300(3).items()}
    # Non-zero biases so the bias gradients are exercised away from the init.
    for k in state:
        if k.endswith(".bias"):
            state[k] = rng.normal(0.0, 0.1, size=state[k].shape)
    x = rng.random((5, 784))
    y = np.array([0, 3, 9, 3, 7])

    loss, grads = L.loss_and_grads(state, x, y)
    assert set(grads) == set(state)
    for k in state:
        assert grads[k].shape == state[k].shape and grads[k].dtype == np.float64

    h = 1e-6
    for name in state:
        flat = state[name].reshape(-1)
        # Spot-check a handful of entries per tensor (the full Jacobian of
        # fc1 would take 235k forward passes).
        for i in rng.choice(flat.size, size=min(flat.size, 12), replace=False):
            orig = flat[i]
            flat[i] = orig + h
            up, _ = L.loss_and_grads(state, x, y)
            flat[i] = orig - h
            down, _ = L.loss_and_grads(state, x, y)
            flat[i] = orig
            numeric = (up - down) / (2 * h)
            analytic = grads[name].reshape(-1)[i]
            assert abs(numeric - analytic) <= 1e-6 + 1e-4 * abs(numeric), (name, i, numeric, analytic)


def test_loss_matches_direct_formula() -> None:
    state = L.init_lenet300(1)
    x, y = _clusters(16, seed=5)
    loss, _ = L.loss_and_grads(state, x, y)
    logits = L.forward(state, x).astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(16), y])), rel=1e-5)


def test_training_learns_separable_problem() -> None:
    x_train, y_train = _clusters(3000, seed=1)
    x_test, y_test = _clusters(1000, seed=2)
    before = L.accuracy(L.init_lenet300(0), x_test, y_test)
    # 3 epochs at batch 32 = 282 steps.
    state = L.train_lenet300(x_train, y_train, epochs=3, batch_size=32, lr=1e-3, seed=0, progress=False)
    after = L.accuracy(state, x_test, y_test)
    assert after > 0.9 and after > before + 0.5
    assert list(state) == list(EXPECTED_SHAPES)
    assert all(v.dtype == np.float32 for v in state.values())


def test_training_is_deterministic_and_init_is_not_mutated() -> None:
    x, y = _clusters(500, seed=3)
    init = L.init_lenet300(4)
    snapshot = {k: v.copy() for k, v in init.items()}
    a = L.train_lenet300(x, y, epochs=1, batch_size=50, lr=1e-3, seed=9, progress=False, init=init)
    b = L.train_lenet300(x, y, epochs=1, batch_size=50, lr=1e-3, seed=9, progress=False, init=init)
    assert all(np.array_equal(init[k], snapshot[k]) for k in init)
    # BLAS may reorder sums across runs; allow float32 rounding noise only.
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
        assert not np.array_equal(a[k], init[k]) or k.endswith(".bias")


def test_predict_shape_and_batching() -> None:
    state = L.init_lenet300(0)
    x, _ = _clusters(250, seed=6)
    full = L.predict(state, x)
    assert full.shape == (250,) and full.dtype == np.int64
    assert np.array_equal(full, L.predict(state, x, batch_size=7))
    assert np.array_equal(full, L.forward(state, x).argmax(1))


def test_input_validation() -> None:
    state = L.init_lenet300(0)
    with pytest.raises(TypeError, match="floating point"):
        L.predict(state, np.zeros((2, 784), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\(N, 784\)"):
        L.predict(state, np.zeros((2, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match="labels"):
        L.accuracy(state, np.zeros((2, 784), dtype=np.float32), np.array([0, 10]))
    bad = dict(state)
    bad["fc1.weight"] = bad["fc1.weight"].T
    with pytest.raises(ValueError, match="fc1"):
        L.forward(bad, np.zeros((1, 784), dtype=np.float32))
    del bad["fc3.bias"]
    with pytest.raises(KeyError, match="fc3.bias"):
        L.forward(bad, np.zeros((1, 784), dtype=np.float32))


@pytest.mark.skipif(
    D.find_mnist_zip() is None or importlib.util.find_spec("numcodecs") is None,
    reason=f"bundled MNIST or numcodecs not installed ({D.INSTALL_HINT})",
)
def test_mnist_subset_beats_chance_clearly() -> None:
    x_train, y_train, x_test, y_test = D.load_mnist()
    # 5k images x 8 epochs at batch 100 = 400 steps, about a second.
    state = L.train_lenet300(x_train[:5000], y_train[:5000], epochs=8, batch_size=100,
                             lr=2e-3, seed=0, progress=False)
    assert L.accuracy(state, x_test, y_test) > 0.9
