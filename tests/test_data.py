"""Vocabulary, encoding, splits and the contiguous batch streams."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn import data
from charrnn.errors import CharrnnError


def vocab_of(text):
    """The vocabulary corpus.scan builds for text read in one piece."""
    chars = data.CharSet()
    raw = text.encode("utf-8")
    chars.add(raw, None if raw.isascii() else text)
    return chars.vocab()


def test_vocab_is_sorted_and_ids_are_compact():
    text = "hello, wörld ✓"
    vocab = vocab_of(text)
    assert vocab == "".join(sorted(set(text)))
    ids = data.encode(text, vocab)
    assert ids.dtype == np.uint8
    assert data.decode(ids, vocab) == text


def test_large_vocab_uses_wider_ids():
    text = "".join(chr(0x4E00 + i) for i in range(300))
    ids = data.encode(text, vocab_of(text))
    assert ids.dtype == np.uint16


def test_unknown_characters_are_listed():
    with pytest.raises(CharrnnError, match="'z'"):
        data.encode("abz", "ab")


def test_split_keeps_the_tail_for_validation():
    ids = np.arange(100)
    train, val = data.split(ids, 0.1)
    np.testing.assert_array_equal(val, np.arange(90, 100))
    assert len(train) == 90


def test_batches_are_contiguous_streams_that_wrap():
    ids = np.arange(2 * 11)  # 2 streams of 11: windows of T=3 fit (11 - 1) // 3 = 3 times
    b = data.Batches(ids, batch_size=2, seq_len=3)
    x0, y0, w0 = b.next()
    x1, y1, w1 = b.next()
    np.testing.assert_array_equal(x0[:, 0], [0, 1, 2])
    np.testing.assert_array_equal(x0[:, 1], [11, 12, 13])
    np.testing.assert_array_equal(y0[:, 0], [1, 2, 3])
    np.testing.assert_array_equal(x1[:, 0], [3, 4, 5])  # the next window continues the stream
    assert not w0 and not w1
    b.next()
    x3, _, w3 = b.next()
    assert w3 and x3[0, 0] == 0 and b.windows_per_epoch == 3


def test_corpus_shorter_than_one_batch_is_an_error():
    with pytest.raises(CharrnnError, match="fewer than one batch"):
        data.Batches(np.arange(50), batch_size=8, seq_len=10)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=60), st.text(max_size=30))
def test_the_encoder_agrees_with_a_plain_dictionary(vocab_chars, text):
    """data.Encoder (tables, the bytes fast path) against {char: id} on any text: the same ids
    for characters of the vocabulary, a CharrnnError listing the others."""
    vocab = vocab_of(vocab_chars)
    assert vocab == "".join(sorted(set(vocab_chars)))
    index = {ch: i for i, ch in enumerate(vocab)}
    outside = sorted(set(text) - set(vocab))
    if outside:
        with pytest.raises(CharrnnError, match="not in the vocabulary") as e:
            data.encode(text, vocab)
        assert repr(outside[0]) in str(e.value)
    else:
        ids = data.encode(text, vocab)
        assert ids.dtype == data.id_dtype(len(vocab))
        assert ids.tolist() == [index[ch] for ch in text]
