"""bfloat16 tensors (ml_dtypes' numpy type): stored bit for bit when raw, encoded from their exact
float32 values and decoded back to bfloat16 (round to nearest even), in Python and the C API."""

from __future__ import annotations

import numpy as np
from conftest import require_module

require_module("ml_dtypes")

import ml_dtypes  # noqa: E402

from weightless.codec import encode_layer  # noqa: E402
from weightless.container import compress, decompress, open_container  # noqa: E402

BF16 = np.dtype(ml_dtypes.bfloat16)


def _state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    return {"w": rng.normal(0, 0.05, size=(64, 48)).astype(BF16),
            "b": rng.normal(0, 1, size=48).astype(BF16),
            "special": np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, 3.0e38], dtype=np.float32).astype(BF16)}


def test_raw_bit_for_bit_and_encoded_back_to_bfloat16(tmp_path):
    state = _state()
    report = compress(state, tmp_path / "m.wl", layers=["w"], sparsity=0.8, clusters=16, cell_bits=10, seed=3,
                      codec="bloomier")
    assert [e.dtype for e in report.tensors] == ["bfloat16"] * 3
    assert report.original_bytes == 2 * sum(a.size for a in state.values())
    out = decompress(tmp_path / "m.wl")
    assert all(a.dtype == BF16 for a in out.values())
    for name in ("b", "special"):
        assert out[name].view(np.uint16).tobytes() == state[name].view(np.uint16).tobytes()
    # The encoded layer: what the float32 layer of the same values decodes to, rounded to bfloat16.
    layer = encode_layer(state["w"].astype(np.float32), sparsity=0.8, clusters=16, cell_bits=10, seed=3)
    np.testing.assert_array_equal(out["w"].view(np.uint16), layer.decode().astype(BF16).view(np.uint16))
    with open_container(tmp_path / "m.wl") as c:
        assert c.entry("w").original_nbytes == 2 * 64 * 48


def test_bfloat16_layers_are_chosen_by_default(tmp_path):
    state = {"w": np.ones((64, 64), np.float32).astype(BF16)}
    report = compress(state, tmp_path / "d.wl", sparsity=0.5)
    assert [e.kind for e in report.tensors] == ["exact"]  # auto: 64 x 64 ones are cheapest exact
    assert decompress(tmp_path / "d.wl")["w"].astype(np.float32).sum() == 64 * 64 / 2
