# Copyright 2026 The VALL-E for Transformers authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Everything between a person's text and audio and VALL-E's ids and codes.

VALL-E (arXiv 2301.02111) reads phonemes and writes EnCodec codes. Two pieces turn what people have into
that and back:

* [`VallEPhonemeTokenizer`]: text -> phonemes (espeak-ng through `phonemizer`) -> ids, with a vocabulary that
  can be built from a corpus or converted from the open implementations (lifeiteng/vall-e: espeak phones,
  `_` between words, BOS/EOS around each utterance; VALL-E X: one IPA character per token).
* [`VallEProcessor`]: the tokenizer plus EnCodec (24 kHz, 6 kbps = 8 codebooks at 75 Hz). Its `__call__` builds
  the zero-shot prompt (prompt transcript + target text as phonemes, the prompt recording as codes), ready for
  `model.generate(**inputs)`; `batch_decode` turns generated codes back into waveforms.

This file is also the processor's Hub code (`trust_remote_code=True`), so it imports only pip packages.
"""

import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
import torch
from transformers import EncodecModel, PreTrainedTokenizer
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging


logger = logging.get_logger(__name__)
# phonemizer warns "words count mismatch" whenever punctuation moves a word boundary; its word alignment is never
# used here, so only its errors are worth showing.
_phonemizer_logger = logging.get_logger(f"{__name__}.phonemizer")
_phonemizer_logger.setLevel(logging.ERROR)


# ---------------------------------------------------------------------------------------------------------------------
# Part 1. Text -> phonemes -> ids
# ---------------------------------------------------------------------------------------------------------------------

VOCAB_FILES_NAMES = {"vocab_file": "vocab.json"}

# The two ways the open implementations cut espeak's output into tokens.
UNIT_PHONE = "phone"  # lifeiteng/vall-e: multi-character phones such as "aɪ" or "tʃ" are one token
UNIT_CHAR = "char"  # VALL-E X: every IPA character is a token
UNITS = (UNIT_PHONE, UNIT_CHAR)

# phonemizer's own default set. Punctuation is cut off the phone it is glued to and becomes a token of its own
# (one per character), so the vocabulary stays small and closed.
PUNCTUATION_MARKS = ';:,.!?¡¿—…"«»“”(){}[]'
# espeak writes stress as a prefix of the stressed phone; split off, it is one token instead of doubling the
# number of vowel tokens.
STRESS_MARKS = "ˈˌ"
# Phonemizer separates phones with this while we parse its output. It never occurs in espeak's IPA.
_PHONE_SEPARATOR = "|"


def _configure_espeak():
    """Points phonemizer at the libespeak-ng that ships inside the `espeakng-loader` wheel.

    Without this, phonemizer looks for a system espeak-ng (`apt install espeak-ng`), which most machines lack.
    An explicit `PHONEMIZER_ESPEAK_LIBRARY` wins, so people with their own espeak build keep it.
    """
    try:
        from phonemizer.backend.espeak.wrapper import EspeakWrapper
    except ImportError as error:
        raise ImportError(
            "VallEPhonemeTokenizer needs `phonemizer` to turn text into phonemes: `pip install phonemizer "
            "espeakng-loader`. Already phonemized input works without it (pass `do_phonemize=False`)."
        ) from error
    if os.environ.get("PHONEMIZER_ESPEAK_LIBRARY") or EspeakWrapper._ESPEAK_LIBRARY is not None:
        return
    try:
        import espeakng_loader
    except ImportError:
        return  # fall back to a system espeak-ng; phonemizer raises a clear error if there is none
    # Both are needed: the library alone finds no voices.
    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    EspeakWrapper.set_data_path(espeakng_loader.get_data_path())


class VallEPhonemeTokenizer(PreTrainedTokenizer):
    r"""
    Turns text into the phoneme ids VALL-E reads, with espeak-ng (through `phonemizer`; the library comes with the
    `espeakng-loader` wheel, no system install needed). Numbers, abbreviations and symbols are read aloud as
    espeak reads them ("$5" -> "five dollars"); punctuation and word boundaries are kept as tokens.

    Tokens are written as a space-separated string, e.g. `"h ə l oʊ _ w ɜː l d ."` for "Hello world." in the
    default settings. [`~VallEPhonemeTokenizer.phonemize`] returns that string, and the tokenizer accepts it back
    with `do_phonemize=False`, so text can be phonemized once (e.g. at data preparation) and tokenized later.

    Build a vocabulary from a corpus with [`~VallEPhonemeTokenizer.build_vocab`].

    Args:
        vocab_file (`str`, *optional*):
            A `vocab.json` mapping each token to its id. Ids may be anything (special tokens included), which is
            what converted vocabularies need. Give either this or `vocab`.
        vocab (`dict[str, int]`, *optional*):
            The same mapping as a dictionary.
        pad_token, bos_token, eos_token, unk_token (`str`, *optional*):
            The special tokens; `None` for one the vocabulary lacks (lifeiteng's has no unknown token).
        language (`str`, *optional*, defaults to `"en-us"`):
            The espeak-ng voice used to phonemize (any espeak language: `"fr-fr"`, `"de"`, `"cmn"`, `"ja"`...).
            Each call may override it with `language=`.
        add_bos_eos (`bool`, *optional*, defaults to `True`):
            Wrap each utterance in `bos_token ... eos_token` (lifeiteng/vall-e does; VALL-E X does not).
        word_separator (`str`, *optional*, defaults to `"_"`):
            The token written between words, or `None` for no word-boundary token.
        with_stress (`bool`, *optional*, defaults to `False`):
            Keep espeak's stress marks (as tokens of their own).
        preserve_punctuation (`bool`, *optional*, defaults to `True`):
            Keep punctuation as tokens (one per character).
        unit (`str`, *optional*, defaults to `"phone"`):
            `"phone"`: one token per espeak phone, multi-character phones like `aɪ` included (lifeiteng/vall-e).
            `"char"`: one token per IPA character (VALL-E X).
        strict (`bool`, *optional*, defaults to `False`):
            What to do with a symbol the vocabulary lacks: `False` maps it to `unk_token` (or drops it when there is
            none) and logs a warning naming it; `True` raises a `ValueError`.
        do_phonemize (`bool`, *optional*, defaults to `True`):
            `False` when the input is already a phoneme string as described above. Each call may override it.
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "right"

    def __init__(
        self,
        vocab_file: str | None = None,
        vocab: Mapping[str, int] | None = None,
        pad_token: str | None = "<pad>",
        bos_token: str | None = "<bos>",
        eos_token: str | None = "<eos>",
        unk_token: str | None = "<unk>",
        language: str = "en-us",
        add_bos_eos: bool = True,
        word_separator: str | None = "_",
        with_stress: bool = False,
        preserve_punctuation: bool = True,
        unit: str = UNIT_PHONE,
        strict: bool = False,
        do_phonemize: bool = True,
        **kwargs,
    ):
        if (vocab_file is None) == (vocab is None):
            raise ValueError(
                "VallEPhonemeTokenizer needs exactly one of `vocab_file` (a vocab.json) or `vocab` (a dict token -> "
                "id). To make a vocabulary from text, use `VallEPhonemeTokenizer.build_vocab(corpus)`."
            )
        if unit not in UNITS:
            raise ValueError(f"`unit` must be one of {UNITS}, got {unit!r}.")
        if word_separator is not None and (not word_separator or any(c.isspace() for c in word_separator)):
            raise ValueError(
                f"`word_separator` must be a non-empty token without spaces (lifeiteng and VALL-E X use '_'), or None; "
                f"got {word_separator!r}."
            )
        if vocab_file is not None:
            with open(vocab_file, encoding="utf-8") as handle:
                vocab = json.load(handle)
        self.encoder = {str(token): int(index) for token, index in vocab.items()}
        if len(set(self.encoder.values())) != len(self.encoder):
            raise ValueError("The vocabulary maps two tokens to the same id; every token needs an id of its own.")
        self.decoder = {index: token for token, index in self.encoder.items()}

        self.language = language
        self.add_bos_eos = add_bos_eos
        self.word_separator = word_separator
        self.with_stress = with_stress
        self.preserve_punctuation = preserve_punctuation
        self.unit = unit
        self.strict = strict
        self.do_phonemize = do_phonemize
        # One espeak backend per language, created on first use: loading the tokenizer and decoding ids must work
        # on machines without espeak.
        self._backends = {}

        super().__init__(
            pad_token=pad_token,
            bos_token=bos_token,
            eos_token=eos_token,
            unk_token=unk_token,
            language=language,
            add_bos_eos=add_bos_eos,
            word_separator=word_separator,
            with_stress=with_stress,
            preserve_punctuation=preserve_punctuation,
            unit=unit,
            strict=strict,
            do_phonemize=do_phonemize,
            # Phoneme strings are not English prose: "d ." must not become "d." when decoding.
            clean_up_tokenization_spaces=kwargs.pop("clean_up_tokenization_spaces", False),
            special_tokens_pattern="bos_eos" if add_bos_eos else "none",
            **kwargs,
        )

    # The espeak backends hold a C library handle: tokenizers sent to `datasets.map(num_proc=...)` workers are
    # pickled, so each worker makes its own.
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_backends"] = {}
        return state

    # -- vocabulary -----------------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def get_vocab(self) -> dict[str, int]:
        return {**self.encoder, **self.added_tokens_encoder}

    def _convert_token_to_id(self, token: str) -> int | None:
        return self.encoder.get(token, self.encoder.get(self.unk_token) if self.unk_token is not None else None)

    def _convert_id_to_token(self, index: int) -> str:
        return self.decoder.get(index, self.unk_token)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        # The inverse of the `do_phonemize=False` input format.
        return " ".join(token for token in tokens if token is not None)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        path = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "vocab.json")
        ordered = dict(sorted(self.encoder.items(), key=lambda item: item[1]))
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(ordered, handle, ensure_ascii=False, indent=1)
            handle.write("\n")
        return (path,)

    # -- text -> phoneme tokens -----------------------------------------------------------------------------------

    def _backend(self, language: str):
        if language not in self._backends:
            _configure_espeak()
            from phonemizer.backend import EspeakBackend

            try:
                self._backends[language] = EspeakBackend(
                    language,
                    preserve_punctuation=self.preserve_punctuation,
                    punctuation_marks=PUNCTUATION_MARKS,
                    with_stress=self.with_stress,
                    # espeak marks words it reads in another language with "(en)...(fr)" flags: keep the phones,
                    # drop the flags.
                    language_switch="remove-flags",
                    logger=_phonemizer_logger,
                )
            except RuntimeError as error:
                raise ValueError(
                    f"espeak-ng does not know the language {language!r}. Pass an espeak voice name such as 'en-us', "
                    "'fr-fr', 'de', 'cmn' or 'ja' (`espeak-ng --voices` lists them)."
                ) from error
        return self._backends[language]

    def _split_phone(self, phone: str) -> list[str]:
        """Cuts one phone as phonemizer writes it ("ˈaɪ", "d,") into tokens: stress, phone, punctuation."""
        tokens, core = [], ""
        for character in phone:
            if character in PUNCTUATION_MARKS or character in STRESS_MARKS:
                if core:
                    tokens.append(core)
                    core = ""
                tokens.append(character)
            else:
                core += character
        if core:
            tokens.append(core)
        if self.unit == UNIT_CHAR:
            tokens = [character for token in tokens for character in token]
        return tokens

    def _espeak_output_to_tokens(self, phonemized: str) -> list[str]:
        tokens = []
        for word in phonemized.split():
            word_tokens = [token for phone in word.split(_PHONE_SEPARATOR) for token in self._split_phone(phone)]
            if not word_tokens:
                continue
            # A word made only of punctuation (espeak keeps "..." apart) is not a word: no separator before it.
            starts_word = any(token not in PUNCTUATION_MARKS for token in word_tokens)
            if tokens and starts_word and self.word_separator is not None:
                tokens.append(self.word_separator)
            tokens.extend(word_tokens)
        return tokens

    def _is_phoneme(self, token: str) -> bool:
        return (
            token not in PUNCTUATION_MARKS
            and token not in STRESS_MARKS
            and token != self.word_separator
            and token not in self.all_special_tokens
        )

    def _text_to_tokens(
        self,
        texts: list[str],
        language: str | None = None,
        do_phonemize: bool | None = None,
        argument_name: str = "text",
    ) -> list[list[str]]:
        """Phonemizes a batch of texts in ONE espeak call (per-text calls cost ~100x more) and checks each result."""
        if do_phonemize is None:
            do_phonemize = self.do_phonemize
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"`{argument_name}[{index}]` must be a string, got {type(text).__name__}.")
            if not text.strip():
                raise ValueError(
                    f"`{argument_name}[{index}]` is empty: there is nothing to say. Remove it or give it some text."
                )
        if do_phonemize:
            # Phonemizer reads its input line by line: a newline inside a text would shift every later result.
            flat = [" ".join(text.split()) for text in texts]
            backend = self._backend(language or self.language)
            from phonemizer.separator import Separator

            separator = Separator(phone=_PHONE_SEPARATOR, word=" ", syllable="")
            phonemized = backend.phonemize(flat, separator=separator, strip=True, njobs=1)
            token_lists = [self._espeak_output_to_tokens(line) for line in phonemized]
        else:
            token_lists = [text.split() for text in texts]
        for index, tokens in enumerate(token_lists):
            if not any(self._is_phoneme(token) for token in tokens):
                raise ValueError(
                    f"`{argument_name}[{index}]` = {texts[index]!r} yields no phonemes (only punctuation, or nothing "
                    f"espeak could read in language {language or self.language!r}). Give text with words in it, or "
                    "pick the `language` it is written in."
                )
        return token_lists

    def _tokens_to_ids(self, token_lists: list[list[str]]) -> list[list[int]]:
        vocab = self.get_vocab()
        unk_id = vocab.get(self.unk_token) if self.unk_token is not None else None
        unknown = Counter()
        ids = []
        for tokens in token_lists:
            item = []
            for token in tokens:
                index = vocab.get(token)
                if index is None:
                    unknown[token] += 1
                    index = unk_id
                if index is not None:
                    item.append(index)
            ids.append(item)
        if unknown:
            listing = ", ".join(f"{token!r} (x{count})" for token, count in unknown.most_common())
            if self.strict:
                raise ValueError(
                    f"Symbols missing from the vocabulary: {listing}. Rebuild the vocabulary on a corpus that has "
                    "them (`VallEPhonemeTokenizer.build_vocab`), add them with `tokenizer.add_tokens`, or pass "
                    "`strict=False` to map them to the unknown token."
                )
            fate = f"mapped to {self.unk_token!r}" if unk_id is not None else "dropped (there is no unk_token)"
            logger.warning(f"Symbols missing from the vocabulary were {fate}: {listing}.")
        return ids

    def phonemize(self, text: str | list[str], language: str | None = None) -> str | list[str]:
        """
        Text -> the tokenizer's phoneme string(s), e.g. `"Hello world."` -> `"h ə l oʊ _ w ɜː l d ."`.

        The result can be stored and fed back with `do_phonemize=False`. A list is phonemized in one espeak call.
        """
        texts = [text] if isinstance(text, str) else list(text)
        strings = [" ".join(tokens) for tokens in self._text_to_tokens(texts, language=language, do_phonemize=True)]
        return strings[0] if isinstance(text, str) else strings

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        # Reached through `tokenizer.tokenize(text)`; calling the tokenizer goes through `_encode_plus` below.
        return self._text_to_tokens([text], kwargs.get("language"), kwargs.get("do_phonemize"))[0]

    def tokenize(self, text: str, **kwargs) -> list[str]:
        # The generic path splits text on added tokens first, which would cut a phoneme string apart mid-way and
        # drop our per-call options; a phonemizer tokenizer has no use for it.
        return self._tokenize(text, **kwargs)

    def _encode_plus(self, text, text_pair=None, is_split_into_words=False, **kwargs):
        language = kwargs.pop("language", None)
        do_phonemize = kwargs.pop("do_phonemize", None)
        if text_pair is not None:
            raise ValueError(
                "VallEPhonemeTokenizer encodes one utterance per item; `text_pair` is not supported. Join the two "
                "texts, or use VallEProcessor(text=..., prompt_text=...) to build a prompt."
            )
        if is_split_into_words:
            raise ValueError(
                "`is_split_into_words=True` is not supported: pass phonemes as one space-separated string per item "
                "with `do_phonemize=False`, e.g. 'h ə l oʊ _ w ɜː l d'."
            )
        if isinstance(text, str):
            ids = self._tokens_to_ids(self._text_to_tokens([text], language, do_phonemize))[0]
        elif isinstance(text, (list, tuple)) and text and all(isinstance(item, str) for item in text):
            ids = self._tokens_to_ids(self._text_to_tokens(list(text), language, do_phonemize))
        else:
            ids = text  # already ids: let the base class check and pad them
        return super()._encode_plus(ids, **kwargs)

    # -- building a vocabulary ------------------------------------------------------------------------------------

    @classmethod
    def build_vocab(
        cls,
        corpus: Iterable[str],
        vocab_size: int | None = None,
        min_frequency: int = 1,
        batch_size: int = 1000,
        **tokenizer_options,
    ) -> "VallEPhonemeTokenizer":
        """
        Phonemizes a text corpus and returns a tokenizer whose vocabulary is the special tokens (pad, bos, eos, unk,
        in that order: ids 0, 1, 2, 3) followed by every symbol met, sorted (as lifeiteng/vall-e orders it).

        Args:
            corpus (`Iterable[str]`): texts, one utterance each (a list, a file object, a dataset column...).
            vocab_size (`int`, *optional*): keep only the most frequent symbols so that the vocabulary has at most
                this many entries.
            min_frequency (`int`, *optional*, defaults to 1): drop symbols seen fewer times.
            batch_size (`int`, *optional*, defaults to 1000): texts phonemized per espeak call.
            tokenizer_options: any [`VallEPhonemeTokenizer`] argument (`language`, `unit`, special tokens...).
        """
        for name in ("vocab", "vocab_file"):
            if name in tokenizer_options:
                raise TypeError(f"build_vocab() makes the vocabulary itself; do not pass `{name}`.")
        specials = [
            tokenizer_options.get(name, default)
            for name, default in (("pad_token", "<pad>"), ("bos_token", "<bos>"), ("eos_token", "<eos>"))
        ] + [tokenizer_options.get("unk_token", "<unk>")]
        specials = list(dict.fromkeys(token for token in specials if token is not None))
        # A tokenizer over the specials alone does the phonemizing, so both share one code path.
        reader = cls(vocab={token: index for index, token in enumerate(specials)}, **tokenizer_options)

        counts = Counter()
        batch = []

        def count(batch):
            texts = [text for text in batch if text.strip()]
            if texts:
                for tokens in reader._text_to_tokens(texts, argument_name="corpus batch item"):
                    counts.update(tokens)

        for text in corpus:
            batch.append(text)
            if len(batch) == batch_size:
                count(batch)
                batch = []
        count(batch)

        symbols = [symbol for symbol, seen in counts.items() if seen >= min_frequency and symbol not in specials]
        if vocab_size is not None:
            if vocab_size <= len(specials):
                raise ValueError(f"`vocab_size`={vocab_size} leaves no room beside the {len(specials)} special tokens.")
            symbols = sorted(symbols, key=lambda symbol: -counts[symbol])[: vocab_size - len(specials)]
        if not symbols:
            raise ValueError("`corpus` gave no phonemes: it is empty or holds no readable text.")
        vocab = {token: index for index, token in enumerate(specials + sorted(symbols))}
        return cls(vocab=vocab, **tokenizer_options)

    def train_new_from_iterator(self, text_iterator: Iterable[str], vocab_size: int | None = None, **kwargs):
        """Like the fast tokenizers' method: a new tokenizer with these options and a vocabulary built on the texts."""
        options = {
            "pad_token": self.pad_token,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "unk_token": self.unk_token,
            "language": self.language,
            "add_bos_eos": self.add_bos_eos,
            "word_separator": self.word_separator,
            "with_stress": self.with_stress,
            "preserve_punctuation": self.preserve_punctuation,
            "unit": self.unit,
            "strict": self.strict,
        }
        return type(self).build_vocab(text_iterator, vocab_size=vocab_size, **{**options, **kwargs})


# ---------------------------------------------------------------------------------------------------------------------
# Part 2. Audio in: anything people hold -> mono float32 at the codec's rate
# ---------------------------------------------------------------------------------------------------------------------

# Below this peak (-80 dBFS) a recording is silence for our purposes: its codes would carry no voice.
SILENCE_PEAK = 1e-4
# Integer PCM is scaled to [-1, 1] by the range of its type.
_PCM_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0, np.dtype(np.int8): 128.0}


def _is_single_audio(audio) -> bool:
    return isinstance(audio, (str, Path, Mapping, np.ndarray, torch.Tensor))


def _read_audio(audio, sampling_rate: int | None, name: str) -> tuple[np.ndarray, int]:
    """One recording of any accepted kind -> (samples as float array, channels last or 1-D; its sampling rate)."""
    if isinstance(audio, Mapping):
        # What `datasets` holds: {"array", "sampling_rate"} when decoded, {"bytes", "path"} with Audio(decode=False).
        if audio.get("array") is not None:
            return _read_audio(audio["array"], audio.get("sampling_rate", sampling_rate), name)
        if audio.get("bytes") is not None:
            audio = io.BytesIO(audio["bytes"])
        elif audio.get("path") is not None:
            audio = audio["path"]
        else:
            raise ValueError(f"`{name}` is a dict without 'array', 'bytes' or 'path': {sorted(audio)}.")
    if isinstance(audio, (str, Path, io.IOBase)):
        try:
            samples, file_rate = sf.read(audio, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError) as error:
            raise ValueError(f"`{name}`: could not read {audio!r} as audio: {error}") from error
        if sampling_rate is not None and sampling_rate != file_rate:
            raise ValueError(
                f"`{name}` is a file recorded at {file_rate} Hz but `sampling_rate`={sampling_rate} was given. Files "
                "carry their own rate: leave `sampling_rate` out for files."
            )
        return samples, file_rate
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu()
        audio = audio.float().numpy() if audio.dtype in (torch.bfloat16, torch.float16) else audio.numpy()
    if not isinstance(audio, np.ndarray):
        raise TypeError(
            f"`{name}` must be a file path, a numpy array, a torch tensor or a datasets audio dict, got "
            f"{type(audio).__name__}."
        )
    if sampling_rate is None:
        raise ValueError(
            f"`{name}` is an array, which does not say how fast it was sampled: pass `sampling_rate` (in Hz)."
        )
    if audio.dtype in _PCM_SCALE:
        audio = audio.astype(np.float32) / _PCM_SCALE[audio.dtype]
    elif audio.dtype == np.uint8:
        audio = (audio.astype(np.float32) - 128.0) / 128.0
    elif not np.issubdtype(audio.dtype, np.floating):
        raise TypeError(f"`{name}` has dtype {audio.dtype}; give float samples or int8/int16/int32/uint8 PCM.")
    return audio, int(sampling_rate)


def _to_mono(samples: np.ndarray, name: str) -> np.ndarray:
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise ValueError(f"`{name}` has shape {samples.shape}; expected (samples,) or (channels, samples).")
    # Files come as (samples, channels), torch/transformers as (channels, samples): the channel axis is the short
    # one. Real recordings have a handful of channels and thousands of samples.
    channels_first, channels_last = samples.shape[0] <= 8, samples.shape[1] <= 8
    if channels_first == channels_last:
        raise ValueError(
            f"`{name}` has shape {samples.shape}, which does not say which axis holds the channels. Pass "
            "(channels, samples) with at most 8 channels, or a 1-D mono array."
        )
    return samples.mean(axis=0 if channels_first else 1)


def load_audio(
    audio, sampling_rate: int | None, target_sampling_rate: int, name: str = "audio"
) -> np.ndarray:
    """
    One recording (path, array, tensor or datasets dict) -> a checked 1-D float32 array at `target_sampling_rate`:
    channels averaged to mono, integer PCM scaled to [-1, 1], resampled with soxr when the rates differ.

    Raises `ValueError` for empty, silent, NaN or infinite audio, naming `name`.
    """
    samples, rate = _read_audio(audio, sampling_rate, name)
    samples = _to_mono(np.asarray(samples), name).astype(np.float32, copy=False)
    if samples.size == 0:
        raise ValueError(f"`{name}` is empty (0 samples).")
    if not np.all(np.isfinite(samples)):
        raise ValueError(f"`{name}` contains NaN or infinite samples; clean the recording first.")
    peak = float(np.max(np.abs(samples)))
    if peak < SILENCE_PEAK:
        raise ValueError(
            f"`{name}` is silent (peak amplitude {peak:.2g}); a voice prompt needs someone speaking in it."
        )
    if rate <= 0:
        raise ValueError(f"`{name}`: the sampling rate must be positive, got {rate}.")
    if rate != target_sampling_rate:
        samples = soxr.resample(samples, rate, target_sampling_rate, quality="HQ").astype(np.float32, copy=False)
    return samples


# ---------------------------------------------------------------------------------------------------------------------
# Part 3. The codec: EnCodec through transformers (or, optionally, the original `encodec` package)
# ---------------------------------------------------------------------------------------------------------------------

DEFAULT_CODEC = "facebook/encodec_24khz"
DEFAULT_BANDWIDTH = 6.0  # kbps: 8 codebooks at 75 Hz for the 24 kHz model, as in the paper
# A `codec_name_or_path` with this prefix names a pretrained model of the original `encodec` package.
ENCODEC_PACKAGE_PREFIX = "encodec:"
# Where save_pretrained puts codec weights that have no Hub id to point at.
CODEC_SUBFOLDER = "codec"

try:  # optional: it drags in a torchaudio that fails to import on CPU-only torch 2.13 machines
    import encodec as encodec_package
except Exception:  # ImportError, or any error from its broken dependencies
    encodec_package = None


def _is_encodec_package_model(codec) -> bool:
    return type(codec).__module__.split(".")[0] == "encodec"


def _reference_travels(name_or_path: str | None) -> bool:
    """Whether a codec reference finds the same weights on another machine: a Hub id or an `encodec:` name does,
    a local folder does not."""
    if not name_or_path:
        return False
    if name_or_path.startswith(ENCODEC_PACKAGE_PREFIX):
        return True
    if os.path.exists(name_or_path):
        return False
    return name_or_path.count("/") <= 1 and not name_or_path.startswith((".", "/", "~"))


def load_codec(name_or_path: str, subfolder: str | None = None):
    """Loads EnCodec from a Hub id or local folder (transformers `EncodecModel`), or `"encodec:<name>"` for the
    original package's pretrained models (e.g. `"encodec:encodec_model_24khz"`, when that package is installed)."""
    if name_or_path.startswith(ENCODEC_PACKAGE_PREFIX):
        if encodec_package is None:
            raise ImportError(
                f"The codec {name_or_path!r} needs the optional `encodec` package, which is not importable here. "
                f"Use transformers' EncodecModel instead: codec_name_or_path={DEFAULT_CODEC!r} holds the same weights."
            )
        constructor = name_or_path[len(ENCODEC_PACKAGE_PREFIX) :]
        return getattr(encodec_package.EncodecModel, constructor)()
    codec = EncodecModel.from_pretrained(name_or_path, subfolder=subfolder or "")
    return codec.eval()


# ---------------------------------------------------------------------------------------------------------------------
# Part 4. The processor
# ---------------------------------------------------------------------------------------------------------------------


def _field(output, name: str):
    """A field of a generate output, whether a ModelOutput, a plain dict or an object with attributes."""
    return output.get(name) if isinstance(output, Mapping) else getattr(output, name, None)


class VallEProcessor(ProcessorMixin):
    r"""
    VALL-E's processor: a [`VallEPhonemeTokenizer`] for text and EnCodec for audio.

    ```python
    inputs = processor(text="Hello there.", prompt_audio="prompt.wav", prompt_text="What the prompt says.")
    generated = model.generate(**inputs, do_sample=True, top_k=50)
    waveforms = processor.batch_decode(generated)  # list of 1-D float32 arrays at processor.sampling_rate
    processor.save_audio(waveforms, ["out.wav"])
    ```

    Args:
        tokenizer ([`VallEPhonemeTokenizer`]): text -> phoneme ids.
        codec (`EncodecModel`, *optional*):
            A loaded codec: transformers' `EncodecModel`, or a model of the original `encodec` package. When `None`,
            `codec_name_or_path` is loaded on first use, so a processor used for text only never loads it.
        codec_name_or_path (`str`, *optional*, defaults to `"facebook/encodec_24khz"`):
            Where the codec comes from: a Hub id or a local folder, or `"encodec:<name>"` for the `encodec`
            package. Saved in `processor_config.json` instead of the weights when it is a Hub id; codecs that only
            exist locally are saved into the processor's folder (see [`~VallEProcessor.save_pretrained`]).
        codec_subfolder (`str`, *optional*): the codec's subfolder inside `codec_name_or_path`.
        codec_bandwidth (`float`, *optional*, defaults to 6.0): EnCodec's bandwidth in kbps (6.0 = 8 codebooks).
        language_ids (`dict[str, int]`, *optional*):
            For models with a language embedding (VALL-E X: `{"en-us": 0, "cmn": 1, "ja": 2}`): espeak language ->
            the model's language id. When set, the processor returns `language_ids` for each item.
        max_prompt_seconds (`float`, *optional*, defaults to 20.0):
            Longer prompts are refused. VALL-E is trained on utterances of 10-20 s and prompted with ~3 s; a prompt
            beyond the training length leaves the model out of its depth.
    """

    # The codec is held by this class, not by ProcessorMixin's `audio_tokenizer` slot: that slot refuses EnCodec
    # and saves only the codec's path, which breaks for a codec that lives in a local folder.
    def __init__(
        self,
        tokenizer,
        codec=None,
        codec_name_or_path: str | None = DEFAULT_CODEC,
        codec_subfolder: str | None = None,
        codec_bandwidth: float = DEFAULT_BANDWIDTH,
        language_ids: Mapping[str, int] | None = None,
        max_prompt_seconds: float | None = 20.0,
        chat_template=None,
    ):
        if codec is not None and not (isinstance(codec, EncodecModel) or _is_encodec_package_model(codec)):
            raise TypeError(
                f"`codec` must be a transformers EncodecModel (or an `encodec` package model), got "
                f"{type(codec).__name__}. To load one, pass `codec_name_or_path` instead."
            )
        if codec is not None and codec_name_or_path == DEFAULT_CODEC:
            # An instance given without saying where it comes from: remember what it says about itself.
            codec_name_or_path, codec_subfolder = self._codec_origin(codec)
        if codec is None and not codec_name_or_path:
            logger.info("VallEProcessor without a codec: text works, audio in and out do not.")
        if language_ids is not None and not (
            isinstance(language_ids, Mapping) and all(isinstance(value, int) for value in language_ids.values())
        ):
            raise TypeError(f"`language_ids` must map language names to integer ids, got {language_ids!r}.")
        if max_prompt_seconds is not None and max_prompt_seconds <= 0:
            raise ValueError(f"`max_prompt_seconds` must be positive or None, got {max_prompt_seconds}.")
        self._codec = codec
        self.codec_name_or_path = codec_name_or_path
        self.codec_subfolder = codec_subfolder
        self.codec_bandwidth = float(codec_bandwidth)
        self.language_ids = dict(language_ids) if language_ids is not None else None
        self.max_prompt_seconds = max_prompt_seconds
        super().__init__(tokenizer, chat_template=chat_template)
        if codec is not None:
            self._check_codec(codec)

    # -- the codec ------------------------------------------------------------------------------------------------

    @staticmethod
    def _codec_origin(codec) -> tuple[str | None, str | None]:
        if _is_encodec_package_model(codec):
            # Only the package's pretrained models can be named again; its constructors are `encodec_model_24khz`...
            pretrained = codec.name in ("encodec_24khz", "encodec_48khz")
            return (f"{ENCODEC_PACKAGE_PREFIX}encodec_model_{codec.name.split('_')[1]}" if pretrained else None), None
        return (getattr(codec, "name_or_path", None) or None), None

    @property
    def codec(self):
        """The EnCodec model, loaded from `codec_name_or_path` on first use."""
        if self._codec is None:
            if not self.codec_name_or_path:
                raise ValueError(
                    "This VallEProcessor has no codec, so it cannot turn audio into codes or back. Create it with "
                    f"`codec=` (a loaded EncodecModel) or `codec_name_or_path=` (e.g. {DEFAULT_CODEC!r})."
                )
            try:
                codec = load_codec(self.codec_name_or_path, self.codec_subfolder)
            except OSError as error:
                where = self.codec_name_or_path
                if self.codec_subfolder:
                    where += f" (subfolder {self.codec_subfolder!r})"
                raise OSError(f"VallEProcessor could not load its codec from {where}: {error}") from error
            self._check_codec(codec)
            self._codec = codec
        return self._codec

    def _check_codec(self, codec):
        if _is_encodec_package_model(codec):
            if codec.channels != 1:
                raise ValueError(f"VALL-E needs a mono codec; this one has {codec.channels} channels.")
            if self.codec_bandwidth not in codec.target_bandwidths:
                raise ValueError(
                    f"`codec_bandwidth`={self.codec_bandwidth} is not one of the codec's {codec.target_bandwidths}."
                )
            codec.set_target_bandwidth(self.codec_bandwidth)
            return
        if self.codec_bandwidth not in codec.config.target_bandwidths:
            raise ValueError(
                f"`codec_bandwidth`={self.codec_bandwidth} is not one of the codec's bandwidths "
                f"{list(codec.config.target_bandwidths)}; VALL-E uses 6.0 (8 codebooks)."
            )
        if codec.config.audio_channels != 1:
            raise ValueError(f"VALL-E needs a mono codec; this one has {codec.config.audio_channels} channels.")

    @property
    def sampling_rate(self) -> int:
        """The rate (Hz) of the audio the codec reads and writes."""
        codec = self.codec
        return codec.sample_rate if _is_encodec_package_model(codec) else codec.config.sampling_rate

    @property
    def hop_length(self) -> int:
        """Audio samples per code frame (320 at 24 kHz / 75 Hz)."""
        codec = self.codec
        if _is_encodec_package_model(codec):
            return int(np.prod(codec.encoder.ratios))
        return codec.config.hop_length

    @property
    def frame_rate(self) -> float:
        """Code frames per second (75 for EnCodec 24 kHz)."""
        return self.sampling_rate / self.hop_length

    @property
    def num_codebooks(self) -> int:
        """Codebooks per frame at `codec_bandwidth` (8 at 6 kbps)."""
        codec = self.codec
        if _is_encodec_package_model(codec):
            return codec.quantizer.get_num_quantizers_for_bandwidth(codec.frame_rate, self.codec_bandwidth)
        return codec.quantizer.get_num_quantizers_for_bandwidth(self.codec_bandwidth)

    @property
    def codebook_size(self) -> int:
        codec = self.codec
        return codec.quantizer.bins if _is_encodec_package_model(codec) else codec.config.codebook_size

    @torch.no_grad()
    def _encode_waveform(self, samples: np.ndarray) -> torch.LongTensor:
        """One mono waveform at the codec's rate -> codes of shape (frames, codebooks)."""
        codec = self.codec
        parameter = next(codec.parameters())
        waveform = torch.from_numpy(samples).to(device=parameter.device, dtype=parameter.dtype)[None, None]
        if _is_encodec_package_model(codec):
            frames = codec.encode(waveform)
            codes = torch.cat([frame_codes for frame_codes, _ in frames], dim=-1)[0]
        else:
            codes = codec.encode(waveform, bandwidth=self.codec_bandwidth).audio_codes[0, 0]
        return codes.transpose(0, 1).long().cpu()

    @torch.no_grad()
    def _decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes of shape (frames, codebooks) -> a 1-D float32 waveform on the CPU."""
        if codes.shape[0] == 0:
            return torch.zeros(0, dtype=torch.float32)
        codec = self.codec
        device = next(codec.parameters()).device
        codes = codes.to(device=device, dtype=torch.long).transpose(0, 1)[None]  # (1, codebooks, frames)
        if _is_encodec_package_model(codec):
            audio = codec.decode([(codes, None)])
        else:
            audio = codec.decode(codes[None], [None]).audio_values
        return audio.reshape(-1).float().cpu()

    # -- audio in -------------------------------------------------------------------------------------------------

    def _load_batch(self, audio, sampling_rate, name) -> tuple[list[np.ndarray], bool]:
        single = _is_single_audio(audio)
        items = [audio] if single else audio
        if not isinstance(items, (list, tuple)) or not items:
            raise TypeError(
                f"`{name}` must be one recording (path, array, tensor) or a non-empty list of them, got "
                f"{type(audio).__name__}."
            )
        for index, item in enumerate(items):
            if not _is_single_audio(item):
                raise TypeError(
                    f"`{name}[{index}]` is a {type(item).__name__}; each recording must be a file path, a numpy "
                    "array, a torch tensor or a datasets audio dict."
                )
        rate = self.sampling_rate
        waveforms = [
            load_audio(item, sampling_rate, rate, name if single else f"{name}[{index}]")
            for index, item in enumerate(items)
        ]
        for index, samples in enumerate(waveforms):
            if samples.shape[0] < self.hop_length:
                which = name if single else f"{name}[{index}]"
                raise ValueError(
                    f"`{which}` lasts {samples.shape[0] / rate * 1000:.1f} ms, shorter "
                    f"than one codec frame ({self.hop_length / rate * 1000:.1f} ms): there is nothing to encode."
                )
        return waveforms, single

    def encode_audio(self, audio, sampling_rate: int | None = None):
        """
        Audio -> EnCodec codes, e.g. for data preparation.

        Args:
            audio: one recording (file path, numpy array, torch tensor, or a `datasets` audio dict) or a list.
            sampling_rate (`int`, *optional*): the rate of array/tensor input; files carry their own.

        Returns:
            `torch.LongTensor` of shape `(frames, codebooks)` for one recording, a list of them for a list
            (each as long as its recording: `ceil(samples / hop_length)` frames at the codec's rate).
        """
        waveforms, single = self._load_batch(audio, sampling_rate, "audio")
        # One recording at a time: EnCodec pads a clip's last frame from its own end, so a batch padded to the
        # longest clip would change the last codes of the shorter ones.
        codes = [self._encode_waveform(samples) for samples in waveforms]
        return codes[0] if single else codes

    # -- text + prompt -> model inputs ----------------------------------------------------------------------------

    def __call__(
        self,
        text: str | list[str],
        prompt_audio=None,
        prompt_text: str | list[str] | None = None,
        sampling_rate: int | None = None,
        language: str | None = None,
        prompt_language: str | None = None,
        return_tensors: str = "pt",
    ) -> BatchFeature:
        """
        Builds VALL-E's zero-shot prompt, ready for `model.generate(**inputs)`.

        * VALL-E: `prompt_audio` is ~3 s of the voice to clone and `prompt_text` what it says; `text` is what to say.
          The model reads phonemes(prompt_text) + phonemes(text) and continues the prompt's codes.
        * VALL-E-continual: `text` is a whole utterance's transcript, `prompt_audio` its first ~3 s, no
          `prompt_text`; the model continues the utterance.
        * No prompt: `text` alone (the voice is then whatever the model makes up).

        Args:
            text (`str` or `list[str]`): what to say, one string per item. Already phonemized text (the tokenizer's
                space-separated format) is accepted when the tokenizer has `do_phonemize=False`.
            prompt_audio (*optional*): one recording for every item, or a list with one per item: a file path, a
                numpy array or torch tensor (mono, or (channels, samples)), or a `datasets` audio dict.
            prompt_text (`str` or `list[str]`, *optional*): what `prompt_audio` says, one for all or one per item.
            sampling_rate (`int`, *optional*): the rate of array/tensor prompts; files carry their own. Audio at
                other rates is resampled to the codec's.
            language (`str`, *optional*): espeak language of `text` (defaults to the tokenizer's). With
                `language_ids` set, it also picks the model's language id.
            prompt_language (`str`, *optional*): espeak language of `prompt_text` (defaults to `language`), for
                cross-lingual prompts.
            return_tensors (`str`, *optional*, defaults to `"pt"`): only PyTorch tensors are supported.

        Returns:
            [`BatchFeature`] with `input_ids` and `attention_mask` (batch, phonemes), right-padded; with a prompt,
            `prompt_codes` (batch, frames, codebooks) padded with 0 and `prompt_attention_mask` (batch, frames);
            with `language_ids` configured, `language_ids` (batch,).
        """
        if return_tensors not in ("pt", None):
            raise ValueError(
                f"VallEProcessor returns PyTorch tensors only: use return_tensors='pt', not {return_tensors!r}."
            )
        texts = self._as_text_list(text, "text")
        batch_size = len(texts)
        if prompt_text is not None and prompt_audio is None:
            raise ValueError(
                "`prompt_text` was given without `prompt_audio`: the transcript needs the recording it describes. "
                "Pass both, or neither."
            )
        tokenizer = self.tokenizer
        token_lists = tokenizer._text_to_tokens(texts, language=language, argument_name="text")
        if prompt_text is not None:
            prompt_texts = self._broadcast(self._as_text_list(prompt_text, "prompt_text"), batch_size, "prompt_text")
            prompt_tokens = tokenizer._text_to_tokens(
                prompt_texts, language=prompt_language or language, argument_name="prompt_text"
            )
            # The two are one utterance to the model, with a word boundary between them.
            joint = [tokenizer.word_separator] if tokenizer.word_separator is not None else []
            prompt_ids = tokenizer._tokens_to_ids([before + joint for before in prompt_tokens])
            ids = [before + after for before, after in zip(prompt_ids, tokenizer._tokens_to_ids(token_lists))]
            prompt_lengths = [len(item) for item in prompt_ids]
        else:
            ids = tokenizer._tokens_to_ids(token_lists)
            prompt_lengths = None
        encoded = tokenizer.pad(
            {"input_ids": [tokenizer.build_inputs_with_special_tokens(item) for item in ids]},
            padding=True,
            return_attention_mask=True,
        )
        data = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

        if prompt_audio is not None:
            waveforms, single = self._load_batch(prompt_audio, sampling_rate, "prompt_audio")
            for index, samples in enumerate(waveforms):
                seconds = samples.shape[0] / self.sampling_rate
                if self.max_prompt_seconds is not None and seconds > self.max_prompt_seconds:
                    raise ValueError(
                        f"`prompt_audio{'' if single else f'[{index}]'}` lasts {seconds:.1f} s, beyond "
                        f"`max_prompt_seconds`={self.max_prompt_seconds}: VALL-E is trained on 10-20 s utterances "
                        "and works best with a ~3 s prompt. Trim the recording, or raise `max_prompt_seconds`."
                    )
            codes = [self._encode_waveform(samples) for samples in waveforms]  # see encode_audio for why one by one
            codes = self._broadcast(codes, batch_size, "prompt_audio")
            data["prompt_codes"], data["prompt_attention_mask"] = self._pad_codes(codes)

        if self.language_ids is not None:
            text_language = language or tokenizer.language
            prompt_language = prompt_language or text_language
            for argument, name in (("language", text_language), ("prompt_language", prompt_language)):
                if name not in self.language_ids:
                    raise ValueError(
                        f"`{argument}`={name!r} has no id in this model's `language_ids` {self.language_ids}; pick "
                        f"one of {sorted(self.language_ids)}."
                    )
            text_id, prompt_id = self.language_ids[text_language], self.language_ids[prompt_language]
            if prompt_lengths is None or prompt_id == text_id:
                data["language_ids"] = [text_id] * batch_size
            else:
                # Cross-lingual prompt (VALL-E X): the transcript's phonemes carry the prompt's language, the
                # rest the text's; one id per phoneme, shaped like `input_ids`.
                leading = tokenizer.build_inputs_with_special_tokens([-1]).index(-1)  # special tokens in front
                width = len(data["input_ids"][0])
                per_phoneme = []
                for count, mask in zip(prompt_lengths, data["attention_mask"]):
                    start = leading + (width - sum(mask) if tokenizer.padding_side == "left" else 0)
                    row = [text_id] * width
                    row[start : start + count] = [prompt_id] * count
                    per_phoneme.append(row)
                data["language_ids"] = per_phoneme

        return BatchFeature(data=data, tensor_type="pt")

    @staticmethod
    def _as_text_list(text, name) -> list[str]:
        if isinstance(text, str):
            return [text]
        if isinstance(text, (list, tuple)) and text and all(isinstance(item, str) for item in text):
            return list(text)
        raise TypeError(f"`{name}` must be a string or a non-empty list of strings, got {text!r:.100}.")

    @staticmethod
    def _broadcast(items: list, batch_size: int, name: str) -> list:
        if len(items) == batch_size:
            return items
        if len(items) == 1:
            return items * batch_size  # one voice for every text
        raise ValueError(f"`{name}` has {len(items)} items for {batch_size} texts; give one, or one per text.")

    @staticmethod
    def _pad_codes(codes: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        longest = max(item.shape[0] for item in codes)
        padded = torch.zeros(len(codes), longest, codes[0].shape[1], dtype=torch.long)
        mask = torch.zeros(len(codes), longest, dtype=torch.long)
        for index, item in enumerate(codes):
            padded[index, : item.shape[0]] = item
            mask[index, : item.shape[0]] = 1
        return padded, mask

    @property
    def model_input_names(self) -> list[str]:
        names = ["input_ids", "attention_mask", "prompt_codes", "prompt_attention_mask"]
        return names + (["language_ids"] if self.language_ids is not None else [])

    # -- codes -> audio out ---------------------------------------------------------------------------------------

    def _split_generated(self, generated) -> list[torch.Tensor]:
        """`generate`'s output, its codes, or a list of per-item codes -> one (frames, codebooks) tensor per item."""
        lengths = None
        if isinstance(generated, (list, tuple)) and all(isinstance(item, torch.Tensor) for item in generated):
            items = list(generated)
        else:
            if not isinstance(generated, torch.Tensor):
                sequences = _field(generated, "sequences")
                if sequences is None:
                    raise TypeError(
                        "Expected the codes from `model.generate` (a (batch, frames, codebooks) LongTensor) or its "
                        f"output with `.sequences`, got {type(generated).__name__}."
                    )
                lengths = _field(generated, "sequence_lengths")
                generated = sequences
            if generated.dim() == 2:
                generated = generated[None]
            if generated.dim() != 3:
                raise ValueError(f"Expected codes of shape (batch, frames, codebooks), got {tuple(generated.shape)}.")
            items = list(generated)
        trimmed = []
        for index, item in enumerate(items):
            if item.dim() != 2:
                raise ValueError(f"Expected item {index} of shape (frames, codebooks), got {tuple(item.shape)}.")
            if lengths is not None:
                length = int(lengths[index])
            else:
                # generate() fills every frame past an item's end with -100.
                negative = (item < 0).any(dim=-1).nonzero()
                length = int(negative[0]) if len(negative) else item.shape[0]
            item = item[:length]
            if item.shape[1] != self.num_codebooks:
                raise ValueError(
                    f"Item {index} has {item.shape[1]} codebooks; the codec expects {self.num_codebooks} at "
                    f"{self.codec_bandwidth} kbps."
                )
            if length and (item.min() < 0 or item.max() >= self.codebook_size):
                raise ValueError(
                    f"Item {index} holds codes outside [0, {self.codebook_size}) within its length {length}; pass "
                    "`sequence_lengths`, or the generated output itself, so that padding is cut off."
                )
            trimmed.append(item)
        return trimmed

    def batch_decode(self, generated, return_tensors: str = "np") -> list:
        """
        Generated codes -> waveforms at `processor.sampling_rate`, each trimmed to its own length.

        Args:
            generated: what `model.generate` returned: the (batch, frames, codebooks) codes, padded with -100 past
                each item's end, or the `return_dict_in_generate=True` output (its `sequence_lengths` are used).
                A list of (frames, codebooks) tensors (e.g. from `encode_audio`) works too.
            return_tensors (`str`, *optional*, defaults to `"np"`): `"np"` for numpy arrays, `"pt"` for tensors.

        Returns:
            A list of 1-D float32 waveforms, one per item.
        """
        if return_tensors not in ("np", "pt"):
            raise ValueError(f"`return_tensors` must be 'np' or 'pt', got {return_tensors!r}.")
        waveforms = [self._decode_codes(codes) for codes in self._split_generated(generated)]
        return [waveform.numpy() for waveform in waveforms] if return_tensors == "np" else waveforms

    def decode(self, generated, return_tensors: str = "pt"):
        """
        The codes of ONE generated utterance -> its waveform, a 1-D float32 torch tensor.

        This is the hook `pipeline("text-to-speech")` calls with `generate`'s `sequences` (one item per call), and it
        expects a tensor back. For several items, and numpy output, use [`~VallEProcessor.batch_decode`].
        """
        items = self._split_generated(generated)
        if len(items) != 1:
            raise ValueError(f"decode() takes one utterance, got {len(items)}; use batch_decode() for a batch.")
        return self.batch_decode(items, return_tensors=return_tensors)[0]

    def save_audio(self, audio, saving_path: str | Path | list[str | Path]) -> list[str]:
        """Writes waveform(s) (from `batch_decode`) as WAV files at `processor.sampling_rate`; returns the paths."""
        waveforms = [audio] if isinstance(audio, (np.ndarray, torch.Tensor)) else list(audio)
        paths = [saving_path] if isinstance(saving_path, (str, Path)) else list(saving_path)
        if len(waveforms) != len(paths):
            raise ValueError(f"Got {len(waveforms)} waveforms for {len(paths)} paths in `saving_path`; give one each.")
        written = []
        for waveform, path in zip(waveforms, paths):
            if isinstance(waveform, torch.Tensor):
                waveform = waveform.detach().cpu().float().numpy()
            if np.asarray(waveform).ndim != 1:
                raise ValueError(f"Waveforms must be 1-D; got shape {np.shape(waveform)} for {str(path)!r}.")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), np.asarray(waveform, dtype=np.float32), self.sampling_rate)
            written.append(str(path))
        return written

    # -- saving and loading ---------------------------------------------------------------------------------------

    def _codec_needs_weights_saved(self) -> bool:
        """A codec with no reference that works elsewhere (a local folder, a model built in memory) is saved with
        its weights; a Hub id is saved as the id alone."""
        has_codec = self._codec is not None or bool(self.codec_name_or_path)
        return has_codec and not _reference_travels(self.codec_name_or_path)

    def to_dict(self) -> dict[str, Any]:
        # Written out in full: the generic version deep-copies every attribute, the codec's weights included.
        embedded = self._codec_needs_weights_saved()
        output = {
            "processor_class": type(self).__name__,
            # None + a subfolder means "inside the folder or repository this processor is loaded from".
            "codec_name_or_path": None if embedded else self.codec_name_or_path,
            "codec_subfolder": CODEC_SUBFOLDER if embedded else self.codec_subfolder,
            "codec_bandwidth": self.codec_bandwidth,
            "language_ids": self.language_ids,
            "max_prompt_seconds": self.max_prompt_seconds,
        }
        if getattr(self, "auto_map", None):
            output["auto_map"] = self.auto_map
        return output

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """
        Saves the tokenizer (`vocab.json`, `tokenizer_config.json`) and `processor_config.json`.

        A codec from the Hub is saved as its id and bandwidth only. A codec that exists only here (a local folder or
        an in-memory model) is saved with its weights into `<save_directory>/codec/`, so the folder works on
        another machine.
        """
        if self._codec_needs_weights_saved():
            if _is_encodec_package_model(self.codec):
                raise ValueError(
                    "This `encodec` package model is not one of the package's pretrained models, so it can be neither "
                    "referenced nor saved. Use transformers' EncodecModel, which save_pretrained can store."
                )
            self.codec.save_pretrained(os.path.join(save_directory, CODEC_SUBFOLDER))
        return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)

    @classmethod
    def get_processor_dict(cls, pretrained_model_name_or_path, **kwargs):
        processor_dict, kwargs_left = super().get_processor_dict(pretrained_model_name_or_path, **kwargs)
        if processor_dict.get("codec_name_or_path") is None and processor_dict.get("codec_subfolder"):
            # The weights were saved inside this folder / repository (see save_pretrained). They load on first
            # use, like any codec reference, so a processor used for text never reads them.
            processor_dict["codec_name_or_path"] = str(pretrained_model_name_or_path)
            processor_dict["codec_subfolder"] = "/".join(
                part for part in (kwargs.get("subfolder"), processor_dict["codec_subfolder"]) if part
            )
        return processor_dict, kwargs_left


# ---------------------------------------------------------------------------------------------------------------------
# Part 5. Auto classes
# ---------------------------------------------------------------------------------------------------------------------

# `save_pretrained` then copies this file next to the tokenizer and processor configs and writes `auto_map`, so the
# folder loads with `trust_remote_code=True` where this project is not installed.
VallEPhonemeTokenizer.register_for_auto_class("AutoTokenizer")
VallEProcessor.register_for_auto_class("AutoProcessor")

# Where the project is installed (or this file sits next to the model code), the Auto classes find these classes
# without remote code.
try:  # a package: Hub remote code, next to the model's configuration file
    from .configuration_valle import VallEConfig
except ImportError:
    try:  # a top-level module: this project installed with pip
        from configuration_valle import VallEConfig
    except ImportError:  # a processor folder on its own: nothing to register against
        VallEConfig = None

if VallEConfig is not None:
    from transformers import AutoConfig, AutoProcessor, AutoTokenizer

    # The tokenizer's loading reads the folder's config.json through AutoConfig: without "valle" known there (when
    # only this file was imported), transformers would ask whether to run the folder's code.
    AutoConfig.register("valle", VallEConfig, exist_ok=True)
    AutoTokenizer.register(VallEConfig, tokenizer_class=VallEPhonemeTokenizer, exist_ok=True)
    AutoProcessor.register(VallEConfig, VallEProcessor, exist_ok=True)


__all__ = ["VallEPhonemeTokenizer", "VallEProcessor", "load_audio", "load_codec"]
