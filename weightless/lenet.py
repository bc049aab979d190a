"""LeNet-300-100 (784-300-100-10, ReLU) in pure numpy.

The model the Weightless paper compresses. Parameters live in a plain dict
with PyTorch-style names and layouts (``fc1.weight`` is (out, in)), so a
state dict trained here and one exported from ``torch.nn.Linear`` layers are
interchangeable for compression.

Training is minibatch Adam with a cosine-decayed learning rate: it reaches
~98% test accuracy on MNIST in a handful of epochs, which is what lets the
demo train a real model in seconds on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = [
    "LAYER_SIZES",
    "PARAM_NAMES",
    "accuracy",
    "forward",
    "init_lenet300",
    "loss_and_grads",
    "predict",
    "train_lenet300",
]

LAYER_SIZES: tuple[int, ...] = (784, 300, 100, 10)
PARAM_NAMES: tuple[str, ...] = (
    "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias",
)
_N_LAYERS = len(LAYER_SIZES) - 1
_TINY = np.finfo(np.float32).tiny  # smallest normal float32

State = dict[str, np.ndarray]


def init_lenet300(seed: int = 0) -> State:
    """Fresh float32 parameters: He-uniform weights (suits ReLU), zero biases."""
    rng = np.random.default_rng(seed)
    state: State = {}
    for i, (fan_in, fan_out) in enumerate(zip(LAYER_SIZES[:-1], LAYER_SIZES[1:]), start=1):
        bound = math.sqrt(6.0 / fan_in)
        state[f"fc{i}.weight"] = rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(np.float32)
        state[f"fc{i}.bias"] = np.zeros(fan_out, dtype=np.float32)
    return state


def _check_state(state: Mapping[str, np.ndarray]) -> None:
    missing = [n for n in PARAM_NAMES if n not in state]
    if missing:
        raise KeyError(f"LeNet-300-100 state is missing {missing}; expected keys {list(PARAM_NAMES)}")
    for i, (fan_in, fan_out) in enumerate(zip(LAYER_SIZES[:-1], LAYER_SIZES[1:]), start=1):
        w, b = state[f"fc{i}.weight"], state[f"fc{i}.bias"]
        if w.shape != (fan_out, fan_in) or b.shape != (fan_out,):
            raise ValueError(
                f"fc{i} has weight {w.shape} / bias {b.shape}, expected "
                f"({fan_out}, {fan_in}) / ({fan_out},) (PyTorch (out, in) layout)"
            )


def _as_inputs(x: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != LAYER_SIZES[0]:
        raise ValueError(f"x must have shape (N, {LAYER_SIZES[0]}), got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        # Raw uint8 pixels would train, badly, on a 255x larger scale.
        raise TypeError(f"x must be floating point scaled to [0, 1], got dtype {x.dtype}")
    return x.astype(dtype, copy=False)


def _as_labels(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be integer labels of shape ({n},), got {y.dtype} {y.shape}")
    if n and (y.min() < 0 or y.max() >= LAYER_SIZES[-1]):
        raise ValueError(f"labels must be in 0..{LAYER_SIZES[-1] - 1}")
    return y.astype(np.intp, copy=False)


def forward(state: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Logits of shape (N, 10). Computes in the dtype of the parameters."""
    _check_state(state)
    h = _as_inputs(x, state["fc1.weight"].dtype)
    for i in range(1, _N_LAYERS + 1):
        h = h @ state[f"fc{i}.weight"].T + state[f"fc{i}.bias"]
        if i < _N_LAYERS:
            np.maximum(h, 0, out=h)
    return h


def _loss_and_grads(
    params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray
) -> tuple[float, State]:
    """Mean softmax cross-entropy and its gradients; inputs already validated."""
    n = x.shape[0]
    acts = [x]  # inputs of each layer, kept for the backward pass
    h = x
    for i in range(1, _N_LAYERS + 1):
        h = h @ params[f"fc{i}.weight"].T + params[f"fc{i}.bias"]
        if i < _N_LAYERS:
            np.maximum(h, 0, out=h)
            acts.append(h)

    # Shift by the row max so exp never overflows.
    z = h - h.max(axis=1, keepdims=True)
    ez = np.exp(z)
    sum_ez = ez.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = float(np.mean(np.log(sum_ez[:, 0]) - z[rows, y]))

    # d(mean CE)/d(logits) = (softmax - onehot) / n
    delta = ez / sum_ez
    delta[rows, y] -= 1
    delta /= n

    grads: State = {}
    for i in range(_N_LAYERS, 0, -1):
        a = acts[i - 1]
        grads[f"fc{i}.weight"] = delta.T @ a
        grads[f"fc{i}.bias"] = delta.sum(axis=0)
        if i > 1:
            delta = delta @ params[f"fc{i}.weight"]
            # ReLU passes gradient only where its output was positive.
            delta *= a > 0
    return loss, grads


def loss_and_grads(
    state: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray
) -> tuple[float, State]:
    """Mean softmax cross-entropy over the batch and its gradient per parameter.

    Works in the parameters' dtype (float64 parameters give float64
    gradients, which is what a finite-difference check needs).
    """
    _check_state(state)
    xs = _as_inputs(x, state["fc1.weight"].dtype)
    return _loss_and_grads(state, xs, _as_labels(y, xs.shape[0]))


def predict(state: Mapping[str, np.ndarray], x: np.ndarray, batch_size: int = 10000) -> np.ndarray:
    """Predicted class labels (int64), computed in batches to bound memory."""
    n = np.asarray(x).shape[0]
    out = np.empty(n, dtype=np.int64)
    for s in range(0, n, batch_size):
        out[s : s + batch_size] = forward(state, x[s : s + batch_size]).argmax(axis=1)
    return out


def accuracy(state: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of samples classified correctly, in [0, 1]."""
    y = _as_labels(y, np.asarray(x).shape[0])
    if y.size == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.mean(predict(state, x) == y))


def train_lenet300(
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    init: Mapping[str, np.ndarray] | None = None,
    masks: Mapping[str, np.ndarray] | None = None,
    frozen: tuple[str, ...] = (),
) -> State:
    """Train LeNet-300-100 with Adam and return a new float32 state dict.

    ``lr`` is the peak learning rate; it follows a half-cosine down to zero
    over all steps, which settles the weights without tuning a schedule.
    ``seed`` fixes the initialisation (unless ``init`` is given, in which
    case training starts from a copy of it) and the shuffling order, so a run
    is reproducible up to BLAS summation order.
    ``progress`` shows a tqdm bar when tqdm is installed; silent otherwise.
    ``masks`` (name -> bool array) keeps pruned weights at zero: retraining after pruning.
    ``frozen`` names parameters left as they are: retraining the later layers around an
    encoded layer (the paper's Algorithm 1).
    """
    if epochs < 0 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need epochs >= 0, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
    xs = _as_inputs(x)
    ys = _as_labels(y, xs.shape[0])
    n = xs.shape[0]
    if n == 0:
        raise ValueError("cannot train on an empty data set")

    if init is None:
        params = init_lenet300(seed)
    else:
        _check_state(init)
        params = {k: np.array(init[k], dtype=np.float32) for k in PARAM_NAMES}
    masks = {k: np.asarray(mk, dtype=bool) for k, mk in (masks or {}).items()}
    for k, mk in masks.items():
        if k not in params or mk.shape != params[k].shape:
            raise ValueError(f"mask {k!r} does not match a parameter's shape")
        params[k] *= mk
    unknown = set(frozen) - set(PARAM_NAMES)
    if unknown:
        raise ValueError(f"unknown parameters to freeze: {sorted(unknown)}")
    # Shuffling gets its own stream so it does not depend on whether the
    # weights came from init_lenet300 or from ``init``.
    rng = np.random.default_rng([seed, 1])

    beta1, beta2, eps = 0.9, 0.999, 1e-8
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch

    bar = None
    if progress and total:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            pass
        else:
            bar = tqdm(total=total, desc="train LeNet-300-100", unit="step")

    step = 0
    try:
        for epoch in range(epochs):
            order = rng.permutation(n)
            running = 0.0
            for s in range(0, n, batch_size):
                idx = order[s : s + batch_size]
                loss, grads = _loss_and_grads(params, xs[idx], ys[idx])
                running += loss
                step += 1
                rate = lr * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / total))
                # Fold Adam's bias corrections into one scalar step size.
                a = rate * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
                for k, g in grads.items():
                    if k in frozen:
                        continue
                    mk, vk = m[k], v[k]
                    mk *= beta1
                    mk += (1.0 - beta1) * g
                    vk *= beta2
                    vk += (1.0 - beta2) * (g * g)
                    # Inputs that are always 0 (MNIST's border pixels) give
                    # exactly-zero gradients, so their moments decay
                    # geometrically into subnormals, which are ~30x slower
                    # on x86 and would dominate the step time. numpy cannot
                    # set flush-to-zero, so flush by hand.
                    mk[np.abs(mk) < _TINY] = 0
                    vk[vk < _TINY] = 0
                    params[k] -= a * mk / (np.sqrt(vk) + eps)
                    if k in masks:
                        params[k] *= masks[k]
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.set_postfix(epoch=epoch + 1, loss=f"{running / steps_per_epoch:.4f}")
    finally:
        if bar is not None:
            bar.close()
    return params
