"""VectorIndex: faiss and NumPy backends agree, approximate recall, auto switching, memory, persistence."""

from __future__ import annotations

import gc
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from simcse.core.errors import SimCSEError
from simcse.use import index as index_mod
from simcse.use.index import META_FILE, VECTORS_FILE, VectorIndex, faiss_available

needs_faiss = pytest.mark.skipif(
    not faiss_available(), reason="faiss is not installed (pip install faiss-cpu)"
)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32))


def clustered(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, dim)).astype(np.float32)
    return unit(x)


def exact_topk(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]


def assert_same_topk(x: np.ndarray, q: np.ndarray, ids_a: np.ndarray, ids_b: np.ndarray, tol: float = 1e-5):
    """The same ids in the same order, except where two neighbours' exact scores are within ``tol`` (float
    rounding orders such near-ties differently in BLAS and faiss): there the exact score profiles agree."""
    exact = q.astype(np.float64) @ x.astype(np.float64).T
    sa = np.take_along_axis(exact, ids_a, axis=1)
    sb = np.take_along_axis(exact, ids_b, axis=1)
    np.testing.assert_allclose(sa, sb, atol=tol)
    differ = ids_a != ids_b
    assert differ.mean() < 0.01, f"{differ.sum()} of {differ.size} ids differ"
    for row, col in zip(*np.nonzero(differ)):
        others = exact[row, ids_b[row]]
        assert np.min(np.abs(others - sa[row, col])) < tol or abs(sa[row, col] - sb[row, -1]) < tol


def recall_at(ids: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, truth)]))


# ---------------------------------------------------------------------------------------- exactness
@needs_faiss
def test_faiss_and_numpy_give_the_same_top_k(monkeypatch):
    monkeypatch.setattr(index_mod, "_SEARCH_BLOCK", 700)  # several blocks per chunk: exercises the merge
    x = random_unit(5000, 64, seed=1)
    q = random_unit(25, 64, seed=2)
    fa = VectorIndex(64, "flat", use_faiss=True)
    npy = VectorIndex(64, "flat", use_faiss=False)
    for part in np.split(x, [1000, 1001, 3500]):  # uneven chunks, one of a single vector
        fa.add(part)
        npy.add(part)
    assert len(fa) == len(npy) == 5000 and not npy.use_faiss
    for k in (1, 5, 10, 100):
        fs, fi = fa.search(q, k)
        ns, ni = npy.search(q, k)
        assert fi.shape == ni.shape == (25, k)
        assert_same_topk(x, q, fi, ni)
        np.testing.assert_allclose(fs, ns, atol=1e-5)
        assert_same_topk(x, q, ni, exact_topk(x, q, k))
        if k <= 10:
            np.testing.assert_array_equal(fi, ni)  # no near-ties this high up on this corpus
        assert np.all(np.diff(ns, axis=1) <= 0)  # best first


def test_numpy_backend_ties_keep_lowest_ids_whatever_the_chunking(monkeypatch):
    monkeypatch.setattr(index_mod, "_SEARCH_BLOCK", 3)
    base = np.eye(4, 8, dtype=np.float32)  # exact dot products: 1 or 0, so ties are real ties
    x = np.concatenate([base, base, base])  # vector i also at ids i + 4 and i + 8
    one = VectorIndex(8, "flat", use_faiss=False)
    one.add(x)
    chunked = VectorIndex(8, "flat", use_faiss=False)
    for part in np.split(x, [1, 5, 6]):
        chunked.add(part)
    for k in (2, 3, 5):
        for idx in (one, chunked):
            scores, ids = idx.search(base, k)
            for i in range(4):
                zeros = [j for j in range(12) if j % 4 != i]
                assert list(ids[i]) == ([i, i + 4, i + 8] + zeros)[:k]
                assert list(scores[i]) == ([1.0] * 3 + [0.0] * 9)[:k]


def test_k_larger_than_the_collection_and_errors():
    idx = VectorIndex(4, "flat", use_faiss=False)
    with pytest.raises(SimCSEError, match="empty"):
        idx.search(np.ones(4, np.float32))
    idx.add(random_unit(3, 4))
    scores, ids = idx.search(np.ones(4, np.float32), k=10)
    assert ids.shape == (1, 3) and sorted(ids[0]) == [0, 1, 2]
    with pytest.raises(SimCSEError, match="shape"):
        idx.add(np.ones((2, 5), np.float32))
    with pytest.raises(SimCSEError, match="index kind"):
        VectorIndex(4, "annoy")


def test_approximate_kinds_need_faiss():
    for kind in ("ivf", "hnsw"):
        with pytest.raises(SimCSEError, match="needs faiss"):
            VectorIndex(8, kind, use_faiss=False)


# ---------------------------------------------------------------------------------------- approximate
@needs_faiss
@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_recall_at_10(kind):
    x = clustered(12_000, 48, clusters=64, seed=4)
    rng = np.random.default_rng(5)
    q = unit(
        x[rng.choice(len(x), 100, replace=False)] + 0.1 * rng.standard_normal((100, 48)).astype(np.float32)
    )
    idx = VectorIndex(48, kind)
    idx.add(x[:8000])  # IVF trains on the first add
    idx.add(x[8000:])
    assert idx.resolved_kind == kind and len(idx) == 12_000
    _, ids = idx.search(q, 10)
    recall = recall_at(ids, exact_topk(x, q, 10))
    assert recall >= 0.9, f"{kind} recall@10 {recall:.3f}"


@needs_faiss
def test_auto_switches_from_exact_to_ivf_past_the_limit(monkeypatch):
    monkeypatch.setattr(index_mod, "AUTO_EXACT_LIMIT", 1000)
    x = random_unit(1600, 32, seed=6)
    idx = VectorIndex(32, "auto")
    idx.add(x[:600])
    assert idx.resolved_kind == "flat" and idx.use_faiss
    idx.add(x[600:1000])  # exactly at the limit: still exact
    assert idx.resolved_kind == "flat"
    idx.add(x[1000:])
    assert idx.resolved_kind == "ivf" and len(idx) == 1600
    _, ids = idx.search(x[::100], 1)  # every vector is its own nearest neighbour, wherever it came from
    np.testing.assert_array_equal(ids[:, 0], np.arange(0, 1600, 100))

    big = VectorIndex(32, "auto")
    big.add(x)  # a first add already past the limit
    assert big.resolved_kind == "ivf"

    no_faiss = VectorIndex(32, "auto", use_faiss=False)
    no_faiss.add(x)
    assert no_faiss.resolved_kind == "flat" and not no_faiss.use_faiss


# ---------------------------------------------------------------------------------------- memory
def test_numpy_backend_adds_without_copying():
    x = random_unit(20_000, 384, seed=7)  # 30.7 MB
    idx = VectorIndex(384, "flat", use_faiss=False)
    gc.collect()
    tracemalloc.start()
    try:
        for part in np.split(x, 4):  # views of x: float32 C-contiguous, so kept as they are
            idx.add(part)
        added, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        idx.search(x[:32], 10)
        _, search_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert added < 1_000_000, f"adding 30.7 MB of vectors allocated {added / 1e6:.1f} MB"
    # searching scores one block at a time: 32 x 20,000 floats, not another copy of the vectors
    assert search_peak < 0.5 * x.nbytes
    assert np.shares_memory(idx.backend.chunks[0], x)


@needs_faiss
def test_faiss_flat_holds_one_copy():
    pytest.importorskip("psutil")
    # Measured in a fresh process: in this one, memory freed by earlier tests is reused and hides the growth.
    code = """
import gc, sys
import numpy as np, psutil
from simcse.use.index import VectorIndex
x = np.random.default_rng(8).standard_normal((100_000, 384), dtype=np.float32)  # 153.6 MB
x /= np.linalg.norm(x, axis=1, keepdims=True)
gc.collect()
proc = psutil.Process()
before = proc.memory_info().rss
idx = VectorIndex(384, "flat", use_faiss=True)
for part in np.array_split(x, 7):
    idx.add(part)
print(x.nbytes, proc.memory_info().rss - before)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    raw, grown = map(int, proc.stdout.split())
    assert 0.8 * raw < grown < 1.3 * raw, f"raw {raw / 1e6:.0f} MB, RSS grew {grown / 1e6:.0f} MB"


def test_numpy_index_loads_as_a_memory_map(tmp_path):
    x = random_unit(20_000, 384, seed=9)
    idx = VectorIndex(384, "flat", use_faiss=False)
    idx.add(x)
    idx.save(tmp_path)
    gc.collect()
    tracemalloc.start()
    try:
        loaded = VectorIndex.load(tmp_path)
        allocated, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert allocated < 1_000_000
    assert isinstance(loaded.backend.chunks[0], np.memmap)
    np.testing.assert_array_equal(loaded.search(x[:5], 3)[1], idx.search(x[:5], 3)[1])


# ---------------------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("kind,use_faiss", [("flat", False), ("flat", True), ("ivf", True), ("hnsw", True)])
def test_save_load_round_trip(tmp_path, kind, use_faiss):
    if use_faiss and not faiss_available():
        pytest.skip("faiss is not installed")
    x = clustered(3000, 32, clusters=16, seed=10)
    idx = VectorIndex(32, kind, use_faiss=use_faiss, nprobe=4, ef_search=64)
    idx.add(x[:2000])
    idx.add(x[2000:])
    before = idx.search(x[:50], 7)
    idx.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx")
    assert (loaded.dim, loaded.resolved_kind, loaded.use_faiss, len(loaded)) == (32, kind, use_faiss, 3000)
    after = loaded.search(x[:50], 7)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0], atol=1e-6)
    assert not list((tmp_path / "idx").glob("*tmp*"))


@needs_faiss
def test_failed_save_keeps_the_previous_index(tmp_path, monkeypatch):
    import faiss

    x = random_unit(300, 16, seed=11)
    old = VectorIndex(16, "flat")
    old.add(x[:100])
    old.save(tmp_path)
    expected = old.search(x[:10], 5)

    def broken_write(index, path):
        with open(path, "wb") as f:
            f.write(b"half an index")
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(faiss, "write_index", broken_write)
    new = VectorIndex(16, "flat")
    new.add(x)
    with pytest.raises(SimCSEError, match="cannot save the index"):
        new.save(tmp_path)
    assert not list(tmp_path.glob("*tmp*"))
    monkeypatch.undo()
    reloaded = VectorIndex.load(tmp_path)
    assert len(reloaded) == 100
    np.testing.assert_array_equal(reloaded.search(x[:10], 5)[1], expected[1])


def test_corrupt_or_missing_files_give_one_line_errors(tmp_path):
    x = random_unit(50, 8, seed=12)
    idx = VectorIndex(8, "flat", use_faiss=False)
    idx.add(x)
    idx.save(tmp_path)

    with pytest.raises(SimCSEError, match="index.json: not found") as e:
        VectorIndex.load(tmp_path / "nowhere")
    assert "\n" not in str(e.value)

    vectors = (tmp_path / VECTORS_FILE).read_bytes()
    (tmp_path / VECTORS_FILE).write_bytes(vectors[: len(vectors) // 2])
    with pytest.raises(SimCSEError, match="vectors.npy") as e:
        VectorIndex.load(tmp_path)
    assert "\n" not in str(e.value)
    (tmp_path / VECTORS_FILE).unlink()
    with pytest.raises(SimCSEError, match="vectors.npy: not found"):
        VectorIndex.load(tmp_path)

    (tmp_path / META_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(SimCSEError, match="index.json: cannot read"):
        VectorIndex.load(tmp_path)
    idx.save(tmp_path / "again")
    (tmp_path / "again" / META_FILE).write_text(
        '{"dim": 8, "kind": "flat", "faiss": false, "size": 49}', encoding="utf-8"
    )
    with pytest.raises(SimCSEError, match="holds 50 vectors"):
        VectorIndex.load(tmp_path / "again")


@needs_faiss
def test_corrupt_faiss_file(tmp_path):
    idx = VectorIndex(8, "hnsw")
    idx.add(random_unit(50, 8))
    idx.save(tmp_path)
    path = tmp_path / "index.faiss"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(SimCSEError, match="index.faiss: cannot read the faiss index") as e:
        VectorIndex.load(tmp_path)
    assert "\n" not in str(e.value)
    path.unlink()
    with pytest.raises(SimCSEError, match="index.faiss: not found"):
        VectorIndex.load(tmp_path)


@needs_faiss
def test_switching_backend_removes_the_stale_file(tmp_path):
    x = random_unit(20, 8)
    a = VectorIndex(8, "flat", use_faiss=True)
    a.add(x)
    a.save(tmp_path)
    b = VectorIndex(8, "flat", use_faiss=False)
    b.add(x[:5])
    b.save(tmp_path)
    assert not (tmp_path / "index.faiss").exists()
    assert len(VectorIndex.load(tmp_path)) == 5
