"""VallEPhonemeTokenizer: text -> espeak phonemes -> ids, vocabularies, options, errors, save/load."""

import json
import logging
import pickle

import pytest
import torch
from transformers import AutoTokenizer

import processing_valle
from processing_valle import VallEPhonemeTokenizer
from tests.utils import TINY_CORPUS, tiny_tokenizer


torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def test_english_phones_with_word_separator_and_punctuation(tokenizer):
    assert tokenizer.phonemize("Hello world.") == "h ə l oʊ _ w ɜː l d ."
    # multi-character phones are single tokens in the default "phone" unit
    assert tokenizer.tokenize("Hi, my eyes.")[:3] == ["h", "aɪ", ","]


def test_numbers_abbreviations_and_symbols_are_read_aloud(tokenizer):
    phonemes = tokenizer.phonemize("Dr. Smith paid $5.")
    assert "d ɑː k t ɚ" in phonemes  # "Doctor"
    assert "d ɑː l ɚ" in phonemes and "f aɪ v" in phonemes  # "five dollars"


def test_char_unit_splits_every_ipa_character():
    tokenizer = tiny_tokenizer(unit="char", add_bos_eos=False)
    assert tokenizer.tokenize("Hi") == ["h", "a", "ɪ"]
    assert all(len(token) == 1 for token in tokenizer.get_vocab() if not token.startswith("<"))


def test_language_is_selectable_per_tokenizer_and_per_call(tokenizer):
    english = tokenizer.phonemize("Bonjour")
    french = tokenizer.phonemize("Bonjour", language="fr-fr")
    assert english != french and "ʒ" in french
    assert VallEPhonemeTokenizer(vocab={"<pad>": 0}, language="fr-fr", add_bos_eos=False).phonemize("Bonjour") == french
    with pytest.raises(ValueError, match="espeak-ng does not know the language 'xx-nowhere'"):
        tokenizer("Hello", language="xx-nowhere")


def test_bos_eos_wrap_each_utterance_only_when_asked(tokenizer):
    ids = tokenizer("Hello world.")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    plain = tiny_tokenizer(add_bos_eos=False)("Hello world.")["input_ids"]
    assert plain == ids[1:-1]


def test_word_separator_stress_and_punctuation_options():
    assert "_" not in tiny_tokenizer(word_separator=None).tokenize("Hello world.")
    assert "|" in tiny_tokenizer(word_separator="|").tokenize("Hello world.")
    stressed = tiny_tokenizer(with_stress=True).tokenize("Hello world.")
    assert "ˈ" in stressed and not any(len(token) > 1 and "ˈ" in token for token in stressed)
    assert "." not in tiny_tokenizer(preserve_punctuation=False).tokenize("Hello world.")


def test_pre_phonemized_input_gives_the_same_ids(tokenizer):
    text = "Would you like some tea?"
    phonemes = tokenizer.phonemize(text)
    assert tokenizer(phonemes, do_phonemize=False)["input_ids"] == tokenizer(text)["input_ids"]
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == phonemes


def test_batch_is_padded_right_matches_single_calls_and_uses_one_espeak_call(tokenizer, monkeypatch):
    texts = ["Hello world.", "Yes, please.", "The quick brown fox jumps over the lazy dog!"]
    singles = [tokenizer(text)["input_ids"] for text in texts]
    backend = tokenizer._backend("en-us")
    calls = []
    original = backend.phonemize
    monkeypatch.setattr(backend, "phonemize", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert len(calls) == 1
    for row, mask, single in zip(batch["input_ids"], batch["attention_mask"], singles):
        assert row[: len(single)].tolist() == single
        assert mask.tolist() == [1] * len(single) + [0] * (row.shape[0] - len(single))
        assert set(row[len(single) :].tolist()) <= {tokenizer.pad_token_id}


def test_unknown_symbols_map_to_unk_with_a_warning_or_raise_when_strict(caplog):
    tokenizer = VallEPhonemeTokenizer.build_vocab(["Hello world."])  # knows only a handful of phones
    with caplog.at_level(logging.WARNING, logger=processing_valle.__name__):
        ids = tokenizer("Zebra")["input_ids"]
    assert tokenizer.unk_token_id in ids
    assert "missing from the vocabulary" in caplog.text and "'z'" in caplog.text

    strict = VallEPhonemeTokenizer.build_vocab(["Hello world."], strict=True)
    with pytest.raises(ValueError, match="Symbols missing from the vocabulary: 'z'"):
        strict("Zebra")

    no_unk = VallEPhonemeTokenizer.build_vocab(["Hello world."], unk_token=None)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=processing_valle.__name__):
        ids = no_unk("Zebra", add_special_tokens=False)["input_ids"]
    assert "dropped" in caplog.text and no_unk.convert_tokens_to_ids("z") is None
    assert len(ids) < len(no_unk.tokenize("Zebra"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"`text\[0\]` is empty"),
        ("   ", r"`text\[0\]` is empty"),
        ("?!...", r"yields no phonemes"),
    ],
)
def test_text_without_phonemes_is_refused(tokenizer, text, message):
    with pytest.raises(ValueError, match=message):
        tokenizer(["Hello.", text][1:])


def test_unsupported_inputs_say_what_to_do_instead(tokenizer):
    with pytest.raises(ValueError, match="text_pair"):
        tokenizer("Hello", "world")
    with pytest.raises(ValueError, match="do_phonemize=False"):
        tokenizer(["Hello", "world"], is_split_into_words=True)
    with pytest.raises(ValueError, match="exactly one of `vocab_file`"):
        VallEPhonemeTokenizer()
    with pytest.raises(ValueError, match="`unit` must be one of"):
        VallEPhonemeTokenizer(vocab={"a": 0}, unit="syllable")
    with pytest.raises(ValueError, match="`word_separator`"):
        VallEPhonemeTokenizer(vocab={"a": 0}, word_separator=" ")


def test_build_vocab_orders_specials_then_sorted_symbols(tokenizer):
    vocab = tokenizer.get_vocab()
    assert [vocab[token] for token in ("<pad>", "<bos>", "<eos>", "<unk>")] == [0, 1, 2, 3]
    symbols = sorted((index, token) for token, index in vocab.items() if index > 3)
    assert [token for _, token in symbols] == sorted(token for _, token in symbols)
    assert {"_", ".", ",", "aɪ", "oʊ"} <= set(vocab)

    capped = VallEPhonemeTokenizer.build_vocab(TINY_CORPUS, vocab_size=12)
    assert len(capped) == 12 and "ə" in capped.get_vocab()  # the most frequent symbols survive
    rare = VallEPhonemeTokenizer.build_vocab(TINY_CORPUS, min_frequency=3)
    assert len(rare) < len(tokenizer)

    retrained = tiny_tokenizer(unit="char", word_separator="#").train_new_from_iterator(["Hello there."])
    assert retrained.unit == "char" and "#" in retrained.get_vocab() and "ð" in retrained.get_vocab()
    with pytest.raises(ValueError, match="gave no phonemes"):
        VallEPhonemeTokenizer.build_vocab(["", "  "])


def test_converted_vocabulary_with_arbitrary_special_ids_round_trips(tmp_path):
    # VALL-E X style: special tokens first in an order of its own, one IPA character per token, no BOS/EOS.
    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "[PAD]": 3, "[MASK]": 4, "_": 5, ".": 6}
    for index, character in enumerate("həloʊwɜːrd", start=7):
        vocab.setdefault(character, index)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tokenizer = VallEPhonemeTokenizer(
        vocab_file=str(tmp_path / "vocab.json"),
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token=None,
        eos_token=None,
        unit="char",
        add_bos_eos=False,
        extra_special_tokens=["[CLS]", "[SEP]", "[MASK]"],
    )
    assert tokenizer.pad_token_id == 3 and tokenizer.unk_token_id == 0 and len(tokenizer) == len(vocab)
    ids = tokenizer("Hello world.")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[:4] == ["h", "ə", "l", "o"]

    tokenizer.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())
    assert config["unit"] == "char" and config["add_bos_eos"] is False and config["language"] == "en-us"
    reloaded = VallEPhonemeTokenizer.from_pretrained(tmp_path / "saved")
    assert reloaded.get_vocab() == tokenizer.get_vocab()
    assert reloaded("Hello world.")["input_ids"] == ids
    batch = reloaded(["Hello.", "Hello world."], padding=True)
    assert batch["input_ids"][0][-1] == 3


def test_save_load_through_auto_tokenizer_keeps_every_option(tmp_path):
    tokenizer = tiny_tokenizer(language="en-gb", with_stress=True, word_separator="|", strict=True)
    tokenizer.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert saved["auto_map"]["AutoTokenizer"][0] == "processing_valle.VallEPhonemeTokenizer"
    assert (tmp_path / "processing_valle.py").exists()  # the Hub code travels with the folder
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(reloaded) is VallEPhonemeTokenizer
    for option in ("language", "with_stress", "word_separator", "strict", "unit", "add_bos_eos"):
        assert getattr(reloaded, option) == getattr(tokenizer, option), option
    text = TINY_CORPUS[0]
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_tokenizer_pickles_for_multiprocess_data_preparation(tokenizer):
    tokenizer("Hello")  # creates an espeak backend, which is not picklable
    clone = pickle.loads(pickle.dumps(tokenizer))
    assert clone("Hello world.")["input_ids"] == tokenizer("Hello world.")["input_ids"]
