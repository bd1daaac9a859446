"""Caption text: tokenizer, vocabulary, decoder batches."""
from __future__ import annotations

import json

import pytest
import torch
from caption_batches import decoder_batch

from cnnlstm.data.collate import IGNORE_INDEX
from cnnlstm.tasks.caption.text import SPECIALS, Vocabulary, tokenize


@pytest.mark.parametrize("text,expected", [
    ("A Man is Riding a horse.", ["a", "man", "is", "riding", "a", "horse"]),
    ('The dog, "quickly" (really!) runs -- far...', ["the", "dog", "quickly", "really", "runs", "far"]),
    ("a man's dog doesn't swim", ["a", "man", "'s", "dog", "does", "n't", "swim"]),
    ("a well-known 3.5 km race & 1,000 people", ["a", "well-known", "3.5", "km", "race", "&", "1,000", "people"]),
    ("  tabs\tand\nnewlines ", ["tabs", "and", "newlines"]),
    ("...", []),
])
def test_tokenize(text, expected):
    assert tokenize(text) == expected
    assert tokenize(" ".join(expected)) == expected  # idempotent on tokenized text


def test_tokenize_rejects_non_strings():
    with pytest.raises(TypeError, match="string"):
        tokenize(["a", "b"])


def test_build_order_is_frequency_then_alphabetical_and_deterministic():
    captions = ["the cat sits", "the dog sits", "a dog runs", "The dog."]
    vocab = Vocabulary.build(captions)
    assert vocab.tokens[:4] == list(SPECIALS)
    assert (vocab.pad, vocab.bos, vocab.eos, vocab.unk) == (0, 1, 2, 3)
    assert vocab.tokens[4:] == ["dog", "the", "sits", "a", "cat", "runs"]
    assert Vocabulary.build(reversed(captions)).tokens == vocab.tokens
    assert Vocabulary.build(captions, min_freq=2).tokens[4:] == ["dog", "the", "sits"]
    assert len(Vocabulary.build(captions, max_size=6)) == 6
    with pytest.raises(ValueError, match="max_size"):
        Vocabulary.build(captions, max_size=3)
    with pytest.raises(ValueError, match="min_freq"):
        Vocabulary.build(captions, min_freq=0)


def test_encode_decode():
    vocab = Vocabulary.build(["a red square moves left then shrinks"])
    ids = vocab.encode("A red circle moves left.")
    assert ids[0] == vocab.bos and ids[-1] == vocab.eos
    assert ids[3] == vocab.unk  # "circle" is unknown
    assert vocab.encode("red", bos=False, eos=False) == [vocab.tokens.index("red")]
    assert vocab.decode(ids) == "a red moves left"  # specials dropped, <unk> included
    assert vocab.decode(torch.tensor(ids + [vocab.tokens.index("red")])) == "a red moves left"  # stops at <eos>
    assert vocab.decode([vocab.pad, vocab.bos]) == ""
    with pytest.raises(ValueError, match="outside"):
        vocab.decode([len(vocab)])


def test_save_load_round_trip(tmp_path):
    vocab = Vocabulary.build(["b a", "b c", "b"], min_freq=1)
    path = vocab.save(tmp_path / "sub" / "vocab.json")
    data = json.loads(open(path).read())
    assert data == {"tokens": vocab.tokens, "min_freq": 1}
    loaded = Vocabulary.load(path)
    assert loaded.tokens == vocab.tokens and len(loaded) == len(vocab)
    assert loaded.encode("b a c") == vocab.encode("b a c")
    (tmp_path / "bad.json").write_text('{"words": []}')
    with pytest.raises(ValueError, match="tokens"):
        Vocabulary.load(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not a vocabulary"):
        Vocabulary.load(tmp_path / "broken.json")
    with pytest.raises(ValueError, match="specials"):
        Vocabulary(["a", "b"])


def test_decoder_batch_shifts_and_pads():
    inputs, targets = decoder_batch([[1, 5, 6, 2], [1, 7, 2]])
    assert inputs.tolist() == [[1, 5, 6], [1, 7, 0]]
    assert targets.tolist() == [[5, 6, 2], [7, 2, IGNORE_INDEX]]
    with pytest.raises(ValueError, match="at least"):
        decoder_batch([[1]])
