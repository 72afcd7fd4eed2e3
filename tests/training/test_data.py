"""Training-file readers (clear DataErrors with file:line), BatchPlan determinism, Collator views and padding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simcse.core.errors import DataError
from simcse.data.sentence_files import read_training_file
from simcse.training.data import BatchPlan, Collator, Prefetcher
from tests.helpers import SENTENCES


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def data_error(path: Path, match: str | None = None, line: int | None = None) -> DataError:
    with pytest.raises(DataError, match=match) as info:
        read_training_file(path)
    err = info.value
    assert err.path == str(path)
    assert err.line == line
    where = f"{path}:{line}:" if line is not None else f"{path}:"
    assert str(err).startswith(where)
    assert "\n" not in str(err)
    return err


# ---------------------------------------------------------------------------------------------- .txt
def test_txt_one_sentence_per_line_blank_lines_skipped_and_counted(tmp_path):
    path = write(tmp_path, "a.txt", "first\n\n  \nsecond\n\nthird\n")
    data = read_training_file(path)
    assert data.rows == [("first",), ("second",), ("third",)]
    assert data.columns == 1 and len(data) == 3
    assert data.skipped_blank == 3
    assert data.path == str(path) and data.header is None


@pytest.mark.parametrize("content", ["a\nb", "a\nb\n", "a\r\nb\r\n", "\ufeffa\nb\n", "\ufeffa\r\nb"])
def test_txt_line_endings_bom_and_trailing_newline(tmp_path, content):
    data = read_training_file(write(tmp_path, "a.txt", content))
    assert data.rows == [("a",), ("b",)]
    assert data.skipped_blank == 0


def test_txt_keeps_inner_whitespace_and_punctuation(tmp_path):
    data = read_training_file(write(tmp_path, "a.txt", '  a, "quoted"\tsentence  \n'))
    assert data.rows == [('  a, "quoted"\tsentence  ',)]


@pytest.mark.parametrize("content", ["\n\n  \n\t\n", "\r\n\r\n"])
def test_txt_only_blank_lines(tmp_path, content):
    data_error(write(tmp_path, "a.txt", content), "empty")


def test_txt_bom_and_blank_lines_only(tmp_path):
    data_error(write(tmp_path, "a.txt", "\ufeff\n\n"), "no sentences")


def test_txt_empty_file(tmp_path):
    data_error(write(tmp_path, "a.txt", b""), "empty")


def test_missing_file(tmp_path):
    data_error(tmp_path / "missing.txt", "not found")


@pytest.mark.parametrize("name", ["dir.txt", "dir.csv"])
def test_directory(tmp_path, name):
    (tmp_path / name).mkdir()
    data_error(tmp_path / name, "directory")


def test_txt_nul_byte_names_the_line(tmp_path):
    data_error(write(tmp_path, "a.txt", b"one\ntwo\nth\x00ree\n"), "NUL", line=3)


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b"\xff\n", 1),
        (b"ok\nok\nbad \xe9 latin-1\nok\n", 3),
        (b"ok\r\n\r\n\xc3\n", 3),
        (b"\xef\xbb\xbfok\nb\xfe\n", 2),
    ],
)
def test_invalid_utf8_names_the_line(tmp_path, content, line):
    err = data_error(write(tmp_path, "a.txt", content), "UTF-8", line=line)
    assert "byte 0x" in str(err)


def test_invalid_utf8_in_csv_names_the_line(tmp_path):
    data_error(write(tmp_path, "a.csv", b"sent0,sent1\na,b\nc,\x80d\n"), "UTF-8", line=3)


# ---------------------------------------------------------------------------------------------- .csv / .tsv
@pytest.mark.parametrize(
    ("header", "columns"),
    [("sent0,sent1,hard_neg", 3), ("sent0,sent1", 2), ("sent0", 1), ("Anchor, Positive ,negative", 3),
     ("premise,entailment,contradiction", 3), ("sentence1,sentence2", 2), ("text", 1)],
)  # fmt: skip
def test_csv_header_detected(tmp_path, header, columns):
    rows = ["a", "b", "c"][:columns]
    data = read_training_file(write(tmp_path, "a.csv", f"{header}\n{','.join(rows)}\n{','.join(rows)}\n"))
    assert data.header == tuple(f.strip() for f in header.split(","))
    assert data.columns == columns
    assert data.rows == [tuple(rows)] * 2


@pytest.mark.parametrize("columns", [1, 2, 3])
def test_csv_headerless_first_row_is_data(tmp_path, columns):
    first = ["a man plays", "a person plays", "nobody plays"][:columns]
    second = ["x", "y", "z"][:columns]
    data = read_training_file(write(tmp_path, "a.csv", f"{','.join(first)}\n{','.join(second)}\n"))
    assert data.header is None
    assert data.columns == columns
    assert data.rows == [tuple(first), tuple(second)]


def test_header_only_a_known_name_in_some_columns_is_data(tmp_path):
    data = read_training_file(write(tmp_path, "a.csv", "sent0,a dog\nx,y\n"))
    assert data.header is None and data.rows == [("sent0", "a dog"), ("x", "y")]


def test_csv_quoted_commas_quotes_and_newlines(tmp_path):
    content = 'sent0,sent1\n"a, b","he said ""hi"""\n"multi\nline",plain\r\nlast,row\n'
    data = read_training_file(write(tmp_path, "a.csv", content))
    assert data.rows == [("a, b", 'he said "hi"'), ("multi\nline", "plain"), ("last", "row")]


def test_csv_line_numbers_count_physical_lines_after_a_multiline_field(tmp_path):
    content = 'sent0,sent1\n"multi\nline",x\na,b,c\n'
    data_error(write(tmp_path, "a.csv", content), "expected 2 columns, found 3", line=4)


def test_csv_unterminated_quote_names_the_line_it_starts_on(tmp_path):
    data_error(write(tmp_path, "a.csv", 'a,b\n"never closed,c\nx,y\n'), "malformed CSV", line=2)


def test_tsv_splits_on_tabs_and_keeps_quotes_verbatim(tmp_path):
    content = 'sent0\tsent1\thard_neg\n"quoted" start\the said "hi\ta, b, c\n'
    data = read_training_file(write(tmp_path, "a.tsv", content))
    assert data.header == ("sent0", "sent1", "hard_neg")
    assert data.rows == [('"quoted" start', 'he said "hi', "a, b, c")]


def test_tsv_headerless(tmp_path):
    data = read_training_file(write(tmp_path, "a.tsv", "a b\tc d\ne\tf\n"))
    assert data.header is None and data.columns == 2 and data.rows == [("a b", "c d"), ("e", "f")]


@pytest.mark.parametrize(
    ("name", "content", "line", "found"),
    [("a.csv", "sent0,sent1\na,b\nc,d\ne\n", 4, 1), ("a.csv", "a,b,c\nd,e,f\ng,h,i,j\n", 3, 4),
     ("a.tsv", "a\tb\nc\td\ne\tf\tg\n", 3, 3), ("a.csv", "a,b\n\nc,d\n\ne,f,g\n", 5, 3)],
)  # fmt: skip
def test_wrong_column_count_names_the_line(tmp_path, name, content, line, found):
    err = data_error(write(tmp_path, name, content), f"expected . columns, found {found}", line=line)
    assert str(err).startswith(f"{tmp_path / name}:{line}: ")


def test_csv_blank_lines_counted(tmp_path):
    data = read_training_file(write(tmp_path, "a.csv", "a,b\n\nc,d\n,\n"))
    assert data.rows == [("a", "b"), ("c", "d")] and data.skipped_blank == 2


@pytest.mark.parametrize(("content", "line", "column"), [("a,b\nc, \n", 2, 2), ("sent0,sent1\n,x\n", 2, 1)])
def test_empty_field_names_line_and_column(tmp_path, content, line, column):
    data_error(write(tmp_path, "a.csv", content), f"column {column} is empty", line=line)


@pytest.mark.parametrize("name", ["a.csv", "a.tsv"])
def test_header_only(tmp_path, name):
    sep = "," if name.endswith("csv") else "\t"
    data_error(write(tmp_path, name, sep.join(["sent0", "sent1", "hard_neg"]) + "\n\n"), "header but no rows")


def test_four_columns(tmp_path):
    data_error(write(tmp_path, "a.csv", "a,b,c,d,x\ne,f,g,h,y\n"), "expected 1 to 4 columns, found 5", line=1)


def test_csv_nul_byte_names_the_line(tmp_path):
    data_error(write(tmp_path, "a.csv", b"a,b\nc,d\x00\n"), "NUL", line=2)


@pytest.mark.parametrize("name", ["a.json", "a.jsonl", "noext", "a.txt.gz"])
def test_unknown_extension(tmp_path, name):
    err = data_error(write(tmp_path, name, "a\nb\n"), "unknown training file type")
    assert ".txt, .csv or .tsv" in str(err)


def test_extension_is_case_insensitive(tmp_path):
    assert read_training_file(write(tmp_path, "A.TXT", "a\nb\n")).rows == [("a",), ("b",)]


@pytest.mark.parametrize(("max_samples", "expected"), [(0, 5), (2, 2), (5, 5), (100, 5)])
def test_max_samples(tmp_path, max_samples, expected):
    path = write(tmp_path, "a.txt", "\n".join(f"s{i}" for i in range(5)))
    data = read_training_file(path, max_samples=max_samples)
    assert data.rows == [(f"s{i}",) for i in range(expected)]


# (property-based tests of the readers: tests/test_hostile_input.py)


# ---------------------------------------------------------------------------------------------- BatchPlan
def all_batches(plan: BatchPlan, epoch: int) -> list[list[int]]:
    return [plan.batch(epoch, s).tolist() for s in range(plan.steps_per_epoch)]


def test_batch_plan_same_seed_same_order_other_seed_or_epoch_differs():
    a, b = BatchPlan(100, 8, seed=3), BatchPlan(100, 8, seed=3)
    assert np.array_equal(a.order(0), b.order(0))
    assert all_batches(a, 1) == all_batches(b, 1)
    assert not np.array_equal(a.order(0), a.order(1))
    assert not np.array_equal(a.order(0), BatchPlan(100, 8, seed=4).order(0))
    assert sorted(a.order(5).tolist()) == list(range(100))


def test_batch_plan_no_shuffle_is_file_order():
    plan = BatchPlan(10, 4, seed=0, shuffle=False)
    assert all_batches(plan, 0) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all_batches(plan, 1) == all_batches(plan, 0)


@pytest.mark.parametrize(
    ("rows", "batch", "drop_last", "steps"),
    [(100, 10, False, 10), (100, 10, True, 10), (105, 10, False, 11), (105, 10, True, 10), (101, 10, False, 10),
     (3, 8, False, 1), (1, 8, False, 0), (2, 2, True, 1)],
)  # fmt: skip
def test_steps_per_epoch(rows, batch, drop_last, steps):
    assert BatchPlan(rows, batch, seed=0, drop_last=drop_last).steps_per_epoch == steps


def test_epoch_covers_every_row_once_except_a_last_batch_of_one():
    plan = BatchPlan(21, 5, seed=1)
    seen = [i for b in all_batches(plan, 0) for i in b]
    assert len(seen) == 20 and len(set(seen)) == 20  # 4 full batches; the single leftover row is dropped
    assert all(len(b) == 5 for b in all_batches(plan, 0))
    plan = BatchPlan(22, 5, seed=1)
    assert [len(b) for b in all_batches(plan, 0)] == [5, 5, 5, 5, 2]
    assert sorted(i for b in all_batches(plan, 0) for i in b) == list(range(22))


@pytest.mark.parametrize("world_size", [2, 4])
def test_rank_slices_are_disjoint_and_cover_the_global_batch(world_size):
    plan = BatchPlan(50, 8, seed=7, drop_last=True)
    for step in range(plan.steps_per_epoch):
        whole = plan.batch(2, step).tolist()
        parts = [plan.batch(2, step, rank, world_size).tolist() for rank in range(world_size)]
        assert all(len(p) == 8 // world_size for p in parts)
        assert sorted(i for p in parts for i in p) == sorted(whole)
        assert len({i for p in parts for i in p}) == len(whole)


@pytest.mark.parametrize(("rank", "world_size"), [(0, 1), (1, 2)])
def test_iterate_resumes_at_a_position_with_the_same_batches(rank, world_size):
    plan = BatchPlan(23, 6, seed=11, drop_last=world_size > 1)
    spe = plan.steps_per_epoch
    it = plan.iterate(0, 0, rank, world_size)
    uninterrupted = [next(it) for _ in range(4 * spe + 2)]
    assert [(e, s) for e, s, _ in uninterrupted[: spe + 1]] == [(0, s) for s in range(spe)] + [(1, 0)]
    for k in (1, spe - 1, spe, 2 * spe + 1):
        epoch, step, _ = uninterrupted[k]
        it = plan.iterate(epoch, step, rank, world_size)
        resumed = [next(it) for _ in range(len(uninterrupted) - k)]
        for (e1, s1, r1), (e2, s2, r2) in zip(resumed, uninterrupted[k:]):
            assert (e1, s1) == (e2, s2)
            assert r1.tolist() == r2.tolist()


# ---------------------------------------------------------------------------------------------- Collator
@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_bert))


def test_unsup_duplicates_each_sentence_into_adjacent_views(tokenizer):
    rows = [(s,) for s in SENTENCES[:4]]
    batch = Collator(tokenizer, 32, views=2)(rows)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape[0] == 8 and int(batch["views"]) == 2
    for i, (sentence,) in enumerate(rows):
        assert ids[2 * i].tolist() == ids[2 * i + 1].tolist()
        assert mask[2 * i].tolist() == mask[2 * i + 1].tolist()
        n = int(mask[2 * i].sum())
        assert ids[2 * i, :n].tolist() == tokenizer(sentence)["input_ids"]


@pytest.mark.parametrize("columns", [2, 3])
def test_sup_columns_are_interleaved_views(tokenizer, columns):
    rows = [tuple(SENTENCES[3 * r + c] for c in range(columns)) for r in range(3)]
    batch = Collator(tokenizer, 32, views=columns)(rows)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape[0] == 3 * columns and int(batch["views"]) == columns
    for r, row in enumerate(rows):
        for c, sentence in enumerate(row):
            k = r * columns + c
            assert ids[k, : int(mask[k].sum())].tolist() == tokenizer(sentence)["input_ids"]


def test_truncation_at_max_seq_len_includes_special_tokens(tokenizer):
    long = " ".join(["the man plays the guitar"] * 10)
    batch = Collator(tokenizer, 7, views=2)([(long,), ("a dog",)])
    ids = batch["input_ids"]
    assert ids.shape == (4, 7)
    assert ids[0, 0].item() == tokenizer.cls_token_id and ids[0, -1].item() == tokenizer.sep_token_id
    assert batch["attention_mask"][0].tolist() == [1] * 7


def test_padding_to_the_longest_in_the_batch_not_max_seq_len(tokenizer):
    rows = [("a dog",), ("a man is playing a guitar",)]
    batch = Collator(tokenizer, 32, views=2)(rows)
    lengths = [len(tokenizer(s)["input_ids"]) for (s,) in rows]
    assert batch["input_ids"].shape == (4, max(lengths)) and max(lengths) < 32
    assert batch["attention_mask"].sum(1).tolist() == [lengths[0]] * 2 + [lengths[1]] * 2
    short = batch["input_ids"][0, lengths[0] :]
    assert (short == tokenizer.pad_token_id).all()
    assert (
        batch["input_ids"].shape[1]
        != Collator(tokenizer, 32, views=2)([("a dog",)] * 2)["input_ids"].shape[1]
    )


def test_pad_to_length_gives_one_shape_for_compile(tokenizer):
    collate = Collator(tokenizer, 16, views=2, pad_to_length=16)
    assert collate([("a dog",)])["input_ids"].shape == (2, 16)
    assert collate([("a man is playing a guitar",)])["input_ids"].shape == (2, 16)


def test_prefetcher_yields_the_plans_batches_in_order_and_stops(tokenizer):
    rows = [(s,) for s in SENTENCES[:12]]
    collate = Collator(tokenizer, 32, views=2)
    plan = [(0, step, list(range(3 * step, 3 * step + 3))) for step in range(4)]
    prefetch = Prefetcher(iter(plan), rows, collate, depth=2)
    for epoch, step, idx in plan:
        got = next(prefetch)
        assert got[:3] == (epoch, step, idx)
        assert got[3]["input_ids"].tolist() == collate([rows[i] for i in idx])["input_ids"].tolist()
    prefetch.close()
    assert not prefetch._thread.is_alive()


def test_prefetcher_surfaces_errors_of_its_thread(tokenizer):
    def broken():
        yield 0, 0, [0]
        raise DataError("train.txt", "bad row", 7)

    prefetch = Prefetcher(broken(), [("a dog",)], Collator(tokenizer, 32, views=2))
    next(prefetch)
    with pytest.raises(DataError, match="train.txt:7"):
        next(prefetch)
    prefetch.close()


def test_prefetcher_close_does_not_hang_on_a_full_queue(tokenizer):
    import itertools

    endless = ((0, i, [0]) for i in itertools.count())
    prefetch = Prefetcher(endless, [("a dog",)], Collator(tokenizer, 32, views=2), depth=1)
    next(prefetch)
    prefetch.close()
    assert not prefetch._thread.is_alive()


def test_a_head_sample_with_too_few_rows_names_the_download(tmp_path, tiny_bert):
    from simcse.core.runtime import Dist
    from simcse.training.setup import read_inputs
    from tests.helpers import train_config

    (tmp_path / "wiki").mkdir()
    (tmp_path / "wiki" / "wiki1m_for_simcse.head10.txt").write_text("a b\n\nc d\n" * 3 + "e\n")  # 7 rows
    config = train_config(tiny_bert, "wiki1m", tmp_path / "o", data_dir=str(tmp_path), max_train_samples=7)
    assert len(read_inputs(config, Dist(), False).data) == 7
    config = train_config(tiny_bert, "wiki1m", tmp_path / "o", data_dir=str(tmp_path), max_train_samples=9)
    with pytest.raises(DataError, match=r"head10.txt: a sample of wiki1m with 7 rows, fewer than max_train_samples 9; "
                                        r"fetch the whole file with: simcse data download wiki1m"):  # fmt: skip
        read_inputs(config, Dist(), False)
