"""Parallel compress: tensors encoded on any concurrent.futures.Executor give the sequential file,
byte for byte, with a bounded number of tensors in flight; the CLI's --jobs; a Dask cluster."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import pytest
from conftest import requires

from weightless.cli import main
from weightless.container import compress, decompress
from weightless.io import save_state

OPTIONS: dict[str, Any] = dict(sparsity=0.8, clusters=8, cell_bits=9)


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    state: dict[str, np.ndarray] = {}
    for i in range(7):
        state[f"layer{i}.weight"] = rng.normal(size=(40 + 7 * i, 33)).astype(np.float32)
        state[f"layer{i}.bias"] = rng.normal(size=40 + 7 * i).astype(np.float32)
    state["head.weight"] = rng.normal(size=(10, 64)).astype(np.float16)
    return state


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Any:
    path = tmp_path_factory.mktemp("parallel") / "model.npz"
    save_state(_model(), path)
    return path


@pytest.fixture(scope="module")
def sequential(model_file, tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("seq") / "m.wl"
    compress(model_file, out, layers=["layer*.weight", "head.weight"], **OPTIONS)
    return out.read_bytes()


class CountingExecutor(ThreadPoolExecutor):
    """A thread pool that records the most futures outstanding at once."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.outstanding = self.most = 0
        self.lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self.lock:
            self.outstanding += 1
            self.most = max(self.most, self.outstanding)
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(lambda _: self._done())
        return future

    def _done(self) -> None:
        with self.lock:
            self.outstanding -= 1


def test_thread_pool_gives_the_sequential_file_with_bounded_work_in_flight(model_file, sequential, tmp_path):
    with CountingExecutor(2) as pool:
        compress(model_file, tmp_path / "t.wl", layers=["layer*.weight", "head.weight"], executor=pool, **OPTIONS)
    assert (tmp_path / "t.wl").read_bytes() == sequential
    # compress keeps at most two per worker in flight, so memory holds a bounded number of tensors
    # (+1: a finished future's done-callback may run after compress has already submitted the next).
    assert 2 <= pool.most <= 2 * 2 + 1


def test_process_pool_from_a_file_and_from_memory(model_file, sequential, tmp_path):
    with ProcessPoolExecutor(2) as pool:
        compress(model_file, tmp_path / "f.wl", layers=["layer*.weight", "head.weight"], executor=pool, **OPTIONS)
        compress(_model(), tmp_path / "m.wl", layers=["layer*.weight", "head.weight"], executor=pool, **OPTIONS)
    assert (tmp_path / "f.wl").read_bytes() == sequential
    assert (tmp_path / "m.wl").read_bytes() == sequential


def test_a_failing_tensor_fails_the_whole_file(tmp_path):
    state = _model()
    state["layer3.weight"][1, 1] = np.nan
    with ProcessPoolExecutor(2) as pool, pytest.raises(ValueError, match="tensor 'layer3.weight': .*NaN"):
        compress(state, tmp_path / "x.wl", layers=["layer*.weight"], executor=pool, **OPTIONS)
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file


def test_cli_jobs(model_file, sequential, tmp_path, capsys):
    out = tmp_path / "j.wl"
    argv = ["compress", str(model_file), "-o", str(out), "--layers", "layer*.weight", "head.weight", "--sparsity",
            "0.8", "--clusters", "8", "--cell-bits", "9", "--jobs", "2"]
    assert main(argv) == 0, capsys.readouterr().err
    assert out.read_bytes() == sequential
    assert main(argv[:-1] + ["0", "--force"]) == 1
    assert "--jobs 0: must be at least 1" in capsys.readouterr().err


@requires("distributed")
def test_dask_cluster(model_file, sequential, tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        compress(model_file, tmp_path / "d.wl", layers=["layer*.weight", "head.weight"],
                 executor=client.get_executor(), **OPTIONS)
    assert (tmp_path / "d.wl").read_bytes() == sequential
    assert set(decompress(tmp_path / "d.wl")) == set(_model())
