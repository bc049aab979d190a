"""Build-time benchmark: weightless vs. binary fuse8 (xor_singleheader).

    python -m pytest bench/test_bench_build.py --benchmark-only

Both sides get the same keys and build 8-bit-cell structures, so the group
table compares construction cost at (nearly) equal cell width.
"""

import numpy as np
import pytest

SIZES = (1_000_000, 4_000_000)
VALUE_BITS, CELL_BITS = 4, 8
# Few rounds: one 4M build takes a fraction of a second, and the whole file
# should stay around a minute.
PEDANTIC = dict(rounds=3, iterations=1, warmup_rounds=1)


@pytest.fixture(scope="module", params=SIZES, ids=lambda n: f"{n // 1_000_000}M")
def data(request):
    """Distinct random keys in random order, plus 4-bit values; built once per n."""
    n = request.param
    rng = np.random.default_rng(n)
    keys = np.unique(rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True))
    assert len(keys) == n  # a collision among 4M uint64s would need ~1e-6 luck
    rng.shuffle(keys)  # np.unique sorts; sorted input would flatter cache behaviour
    values = rng.integers(0, 2**VALUE_BITS, n).astype(np.uint16)
    return n, keys, values


def _record(benchmark, n, bits_per_key):
    benchmark.extra_info["bits_per_key"] = round(bits_per_key, 4)
    if benchmark.stats:  # None under --benchmark-disable
        stats = benchmark.stats.stats
        benchmark.extra_info["ns_per_key"] = round(stats.median * 1e9 / n, 1)
        # min is the steadier figure on a shared, noisy machine
        benchmark.extra_info["ns_per_key_min"] = round(stats.min * 1e9 / n, 1)


def test_build_fuse8(benchmark, data):
    pytest.importorskip("pyfusefilter")
    from peers import fuse8_build

    n, keys, _ = data
    benchmark.group = f"build-{n}"
    peer = benchmark.pedantic(fuse8_build, args=(keys,), **PEDANTIC)
    assert all(peer.contains(int(k)) for k in keys[:1000])
    _record(benchmark, n, peer.bits_per_key())


# fuse8 builds on one thread; weightless defaults to all cores, so show both. The chunked
# layout (format v3, the default) and the fuse layout (format v2, arity 3 as v2's default).
@pytest.mark.parametrize("layout", ["chunked", "fuse"])
@pytest.mark.parametrize("threads", [1, None], ids=["1thread", "allcores"])
def test_build_weightless(benchmark, data, threads, layout):
    import weightless  # not importorskip: a broken build should fail, not skip

    n, keys, values = data
    benchmark.group = f"build-{n}"
    f = benchmark.pedantic(
        weightless.BloomierFilter,
        args=(keys, values),
        kwargs=dict(value_bits=VALUE_BITS, cell_bits=CELL_BITS, seed=0, threads=threads, layout=layout,
                    arity=4 if layout == "chunked" else 3),
        **PEDANTIC,
    )
    assert np.array_equal(f.lookup(keys[:1000]), values[:1000])
    _record(benchmark, n, f.nbytes * 8 / n)
