"""Corpus-scale encoding: equals Encoder.encode, keeps line i = row i, bounded memory, resumable, torchrun."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simcse.core.errors import DataError, SimCSEError
from simcse.data.corpus_files import iter_line_blocks, scan_input
from simcse.modeling.encoder import Encoder
from simcse.modeling.sentence_encoder import SentenceEncoder
from simcse.use.corpus import encode_corpus
from tests.helpers import SENTENCES, make_tiny_bert

HERE = Path(__file__).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}


def shards_of(output: Path) -> Path:
    return output.with_name(output.name + ".shards")


@pytest.fixture(scope="module")
def encoder(tiny_bert) -> Encoder:
    enc = Encoder.load(str(tiny_bert), "avg")
    assert len(set(enc.tokenize(SENTENCES[:1]).input_ids[0])) > 3  # words, not only [UNK]s
    return enc


@pytest.fixture(scope="module")
def other_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("other-bert"), seed=7)


def write_lines(path: Path, lines: list[str], newline: str = "\n", trailing: bool = True) -> Path:
    path.write_bytes((newline.join(lines) + (newline if trailing else "")).encode("utf-8"))
    return path


# ---------------------------------------------------------------------------------------------- scanning
@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.text(st.characters(blacklist_characters="\n\r\x00", blacklist_categories=["Cs"])),
                   min_size=1, max_size=30),
    shard_size=st.integers(1, 7),
    trailing=st.booleans(),
    crlf=st.booleans(),
)  # fmt: skip
def test_scan_and_read_back_every_line_in_its_shard(tmp_path_factory, lines, shard_size, trailing, crlf):
    if not trailing and lines[-1] == "":
        trailing = True  # "a\n" and "a\n" + "" are the same file: the last line is the one before
    # a first line starting with U+FEFF is written as the bytes of a BOM, which the reader drops (as it must:
    # test_scan_chunk_boundaries_and_bom); such a file cannot hold that line, so it is not a case here
    assume(not lines[0].startswith("\ufeff"))
    path = write_lines(tmp_path_factory.mktemp("scan") / "in.txt", lines, "\r\n" if crlf else "\n", trailing)
    scan = scan_input(path, shard_size)
    assert scan.lines == len(lines)
    assert len(scan.offsets) == -(-len(lines) // shard_size)
    got = []
    for k, offset in enumerate(scan.offsets):
        count = min(shard_size, len(lines) - k * shard_size)
        for block in iter_line_blocks(path, offset, k * shard_size, count, block_size=2):
            assert 1 <= len(block) <= 2
            got.extend(block)
    assert got == lines


def test_scan_chunk_boundaries_and_bom(tmp_path, monkeypatch):
    import simcse.data.corpus_files as corpus

    monkeypatch.setattr(corpus, "CHUNK", 5)  # lines and multibyte characters cut across chunks
    lines = ["héllo wörld", "", "€uro", "abc", "a longer line than one chunk", "z"]
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode("utf-8"))
    scan = scan_input(path, 2)
    assert scan.lines == 6 and len(scan.offsets) == 3
    got = [
        x for k, off in enumerate(scan.offsets) for b in iter_line_blocks(path, off, 2 * k, 2, 8) for x in b
    ]
    assert got == lines


@pytest.mark.parametrize(
    "content,line,message",
    [
        (b"good\nfine\nna\xefve\xe9\n", 3, "not valid UTF-8"),
        (b"good\nnul \x00 here\n", 2, "NUL byte"),
    ],
)
def test_bad_text_names_file_and_line(tmp_path, content, line, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        scan_input(path, 10)
    assert str(info.value).startswith(f"{path}:{line}: ")


# ---------------------------------------------------------------------------------------------- encoding
LINES = SENTENCES + ["", "   ", "ünïcödé text, more than ascii", "a man", "x " * 80]


@pytest.mark.parametrize("normalize", [True, False])
def test_corpus_equals_encode_of_the_whole_file(tmp_path, encoder, normalize):
    lines = LINES * 3
    path = write_lines(tmp_path / "in.txt", lines, "\r\n", trailing=False)
    out = encode_corpus(encoder, path, tmp_path / "out.npy", normalize=normalize, shard_size=7, block_size=3)
    got = np.load(out)
    expected = encoder.encode(lines, normalize=normalize)
    assert got.dtype == np.float32 and got.shape == (len(lines), encoder.dim)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # blank lines are encoded (as ""), so line i stays row i
    np.testing.assert_allclose(got[len(SENTENCES)], encoder.encode([""], normalize=normalize)[0], atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.npy"]


def test_model_by_path_with_pooler_and_max_length(tmp_path, tiny_bert):
    path = write_lines(tmp_path / "in.txt", LINES)
    out = encode_corpus(str(tiny_bert), path, tmp_path / "sub" / "out.npy", pooler="cls", max_length=8)
    expected = Encoder.load(str(tiny_bert), "cls", max_length=8).encode(LINES, normalize=True)
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)


class FakeEncoder(SentenceEncoder):
    """Row i of the output is [line number, length, 0, 0 ...] for lines 'line <n> xxx': cheap and checkable."""

    pooler = inference_pooler = "avg"
    max_length = 32
    source = "fake"

    def __init__(self, dim: int, fingerprint: str = "fake-1", fail_after_blocks: int | None = None):
        self.dim, self._fingerprint, self.fail_after_blocks = dim, fingerprint, fail_after_blocks
        self.lines_encoded = 0
        self.blocks = 0
        self.on_encode = None

    def fingerprint(self) -> str:
        return self._fingerprint

    def encode(self, lines, batch_size=128, normalize=False, max_length=None, dtype=None):
        if self.fail_after_blocks is not None and self.blocks >= self.fail_after_blocks:
            raise KeyboardInterrupt
        if self.on_encode is not None:
            self.on_encode()
        self.blocks += 1
        self.lines_encoded += len(lines)
        out = np.zeros((len(lines), self.dim), dtype=np.float32)
        out[:, 0] = [int(line.split()[1]) for line in lines]
        out[:, 1] = [len(line) for line in lines]
        return out


def numbered_file(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(f"line {i} {'x' * (i % 13)}\n")
    return path


def check_numbered(out: Path, n: int) -> None:
    got = np.load(out, mmap_mode="r")
    assert got.shape[0] == n
    for start in range(0, n, 50_000):
        rows = np.asarray(got[start : start + 50_000])
        idx = np.arange(start, start + len(rows))
        assert np.array_equal(rows[:, 0], idx.astype(np.float32))
        assert np.array_equal(rows[:, 1], (len("line ") + np.char.str_len(idx.astype(str)) + 1 + idx % 13))


def test_memory_stays_bounded_on_a_200k_line_file(tmp_path):
    n, dim = 200_000, 256
    path = numbered_file(tmp_path / "big.txt", n)
    full = n * dim * 4  # the whole embedding matrix: 205 MB
    fake = FakeEncoder(dim)
    tracemalloc.start()
    try:
        out = encode_corpus(fake, path, tmp_path / "big.npy", shard_size=50_000, block_size=2048)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < full / 20, f"peak {peak / 1e6:.1f} MB for a {full / 1e6:.0f} MB matrix"
    assert out.stat().st_size > full
    check_numbered(out, n)
    assert fake.lines_encoded == n


def test_resume_reuses_finished_shards_and_recomputes_the_rest(tmp_path):
    n = 1000
    path = numbered_file(tmp_path / "in.txt", n)
    out = tmp_path / "out.npy"
    with pytest.raises(KeyboardInterrupt):  # interrupted inside shard 3 (4 blocks of 50 per shard)
        encode_corpus(FakeEncoder(8, fail_after_blocks=13), path, out, shard_size=200, block_size=50)
    shard_dir = shards_of(out)
    done = sorted(p.name for p in shard_dir.glob("shard-*.json"))
    assert done == [f"shard-0000{k}.json" for k in range(3)]
    assert not out.exists()
    mtimes = {p.name: p.stat().st_mtime_ns for p in shard_dir.glob("shard-*.npy")}
    time.sleep(0.01)

    rerun = FakeEncoder(8)
    seen = []
    rerun.on_encode = lambda: seen.append(
        {p.name: p.stat().st_mtime_ns for p in shard_dir.glob("shard-*.npy")}
    )
    messages = []
    encode_corpus(rerun, path, out, block_size=50, log=messages.append)  # shard size from the manifest
    assert rerun.lines_encoded == n - 600
    assert all(s[name] == t for s in seen for name, t in mtimes.items())
    assert messages[0] == "resuming: 3 of 5 shards (600 lines) already encoded and verified"
    assert messages[-1].endswith(
        "float32; precision fp32 (auto: this CPU has no bf16 units (AMX, AVX512-BF16), "
        "so bf16 would be slower; SIMCSE_CPU_FLAGS is set)"
    )  # which precision, and why
    check_numbered(out, n)
    assert not shard_dir.exists()


def test_a_corrupted_shard_is_encoded_again(tmp_path):
    path = numbered_file(tmp_path / "in.txt", 400)
    out = tmp_path / "out.npy"
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(FakeEncoder(8, fail_after_blocks=4), path, out, shard_size=100, block_size=50)
    shard = shards_of(out) / "shard-00000.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    rerun = FakeEncoder(8)
    encode_corpus(rerun, path, out, shard_size=100, block_size=50)
    assert rerun.lines_encoded == 400 - 100  # shard 1 reused; shard 0 (corrupted), 2 and 3 encoded
    check_numbered(out, 400)


def test_a_manifest_from_another_model_or_input_is_refused(tmp_path, tiny_bert, other_bert):
    path = write_lines(tmp_path / "in.txt", LINES * 4)
    out = tmp_path / "out.npy"
    first = Encoder.load(str(tiny_bert), "avg")
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(Interrupting(first, 1), path, out, shard_size=10, block_size=10)
    shard_dir = shards_of(out)
    before = sorted(p.name for p in shard_dir.iterdir())
    manifest = shard_dir / "manifest.json"
    with pytest.raises(SimCSEError, match="model.fingerprint") as info:
        encode_corpus(str(other_bert), path, out, pooler="avg", shard_size=10)
    assert str(info.value).startswith(f"{manifest}: left by a run with a different ")
    assert "--overwrite" in str(info.value)
    with pytest.raises(SimCSEError, match=r"settings\.normalize"):
        encode_corpus(first, path, out, normalize=False)
    assert sorted(p.name for p in shard_dir.iterdir()) == before

    with path.open("a", encoding="utf-8") as f:
        f.write("one more line\n")
    with pytest.raises(SimCSEError, match=r"input\.head_sha256.*input\.size"):
        encode_corpus(first, path, out)
    assert sorted(p.name for p in shard_dir.iterdir()) == before

    second = Encoder.load(str(other_bert), "avg")
    encode_corpus(second, path, out, overwrite=True, shard_size=10)
    np.testing.assert_allclose(
        np.load(out), second.encode(LINES * 4 + ["one more line"], normalize=True), atol=1e-5
    )


class Interrupting(SentenceEncoder):
    """Wraps an encoder; raises KeyboardInterrupt on block number ``after``."""

    def __init__(self, encoder: Encoder, after: int):
        self.encoder, self.after, self.blocks = encoder, after, 0
        self.source, self.pooler, self.dim, self.max_length = (
            encoder.source,
            encoder.pooler,
            encoder.dim,
            encoder.max_length,
        )

    @property
    def inference_pooler(self) -> str:
        return self.encoder.inference_pooler

    def fingerprint(self) -> str:
        return self.encoder.fingerprint()

    def check_max_length(self, max_length):
        return self.encoder.check_max_length(max_length)

    def encode(self, *args, **kwargs):
        if self.blocks >= self.after:
            raise KeyboardInterrupt
        self.blocks += 1
        return self.encoder.encode(*args, **kwargs)


def test_existing_output_is_refused_unless_overwrite(tmp_path, encoder):
    path = write_lines(tmp_path / "in.txt", LINES)
    out = tmp_path / "out.npy"
    out.write_bytes(b"precious")
    with pytest.raises(SimCSEError, match="already exists; pass --overwrite"):
        encode_corpus(encoder, path, out)
    assert out.read_bytes() == b"precious"
    encode_corpus(encoder, path, out, overwrite=True)
    assert np.load(out).shape == (len(LINES), encoder.dim)


@pytest.mark.parametrize("case", ["missing", "empty", "directory", "latin-1"])
def test_input_errors_write_nothing(tmp_path, encoder, case):
    path = tmp_path / "in.txt"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "directory":
        path.mkdir()
    elif case == "latin-1":
        path.write_bytes("ok\ncafé\n".encode("latin-1"))
    out = tmp_path / "o" / "out.npy"
    with pytest.raises(DataError) as info:
        encode_corpus(encoder, path, out)
    assert str(info.value).startswith(f"{path}:2: " if case == "latin-1" else f"{path}: ")
    assert not out.exists() and not shards_of(out).exists()


# ---------------------------------------------------------------------------------------------- processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sigkill_then_rerun_continues_from_finished_shards(tmp_path, tiny_bert):
    n = 4000
    lines = [SENTENCES[i % len(SENTENCES)] + f" {i}" for i in range(n)]
    path = write_lines(tmp_path / "in.txt", lines)
    out = tmp_path / "out.npy"
    cmd = [sys.executable, "-m", "simcse.cli", "encode", str(tiny_bert), "--input", str(path), "--output", str(out),
           "--pooler", "avg", "--shard-size", "100", "--block-size", "50", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = shards_of(out) / "shard-00000.json"
    deadline = time.time() + 120
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    done = len(list(shards_of(out).glob("shard-*.json")))
    assert 1 <= done < n // 100
    assert not out.exists()

    rerun = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming: {done} of 40 shards ({done * 100} lines) already encoded and verified" in rerun.stderr
    expected = Encoder.load(str(tiny_bert), "avg").encode(lines, normalize=True)
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)
    assert not shards_of(out).exists()


def test_torchrun_two_processes_equal_one(tmp_path, tiny_bert):
    lines = (LINES * 30)[:331]  # 5 shards of 70: rank 0 takes 0, 2, 4 and rank 1 takes 1, 3
    path = write_lines(tmp_path / "in.txt", lines)
    single = encode_corpus(
        str(tiny_bert), path, tmp_path / "single.npy", pooler="avg", shard_size=70, block_size=32
    )
    out = tmp_path / "dist.npy"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "simcse.cli", "encode", str(tiny_bert), "--input", str(path),
           "--output", str(out), "--pooler", "avg", "--shard-size", "70", "--block-size", "32"]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count(f"wrote {out}: 331 x 32 float32") == 1  # rank 0 reports, once
    np.testing.assert_allclose(np.load(out), np.load(single), atol=1e-6)
    assert not shards_of(out).exists()
