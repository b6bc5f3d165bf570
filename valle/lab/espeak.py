"""Speech synthesis with the espeak-ng C library shipped inside the `espeakng-loader` wheel.

No system install is needed: the wheel holds `libespeak-ng.so` and its data folder, and we
drive the library through `ctypes` (the same C API that the `espeak-ng` program uses):
`espeak_Initialize` in synchronous mode, a synthesis callback that collects the 16-bit
samples, `espeak_SetVoiceByName` for a language voice plus a variant ("en-us+f3"), and
`espeak_SetParameter` for rate, pitch and pitch range.

The library keeps global state, so one process holds one `EspeakSynthesizer`; for
parallel synthesis use separate processes.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

import numpy as np

# Values from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE, _PARAM_WORDGAP = 1, 2, 3, 4, 7

# English language voices of espeak-ng that read Latin-script English text. `en` is
# British English (`en-gb` is not a name SetVoiceByName accepts); `en-Shaw` expects the
# Shavian alphabet and is left out.
ENGLISH_VOICES = (
    "en",
    "en-us",
    "en-029",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-gb-x-rp",
    "en-us-nyc",
)

# Voice variants (files in espeak-ng-data/voices/!v) that change the timbre and still sound
# like speech. Left out: whispering (no voicing), robots, effects (Demonic, Tweaky, croak),
# `fast` (a speed test), and "Mr serious" (a space in its name).
SPEECH_VARIANTS = (
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Denis", "Diogo", "Gene",
    "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike",
    "Nguyen", "Reed", "RicishayMax", "RicishayMax2", "RicishayMax3", "Storm", "adam",
    "anika", "announcer", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb",
    "david", "ed", "edward", "edward2", "f1", "f2", "f3", "f4", "f5", "grandma", "grandpa",
    "gustave", "ian", "iven", "iven2", "iven3", "iven4", "john", "kaukovalta", "klatt",
    "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "linda", "m1", "m2", "m3", "m4", "m5",
    "m6", "m7", "m8", "marcelo", "max", "michel", "miguel", "mike2", "norbert", "pablo",
    "paul", "pedro", "quincy", "rob", "robert", "sandro", "shelby", "steph", "steph2",
    "steph3", "travis", "victor", "zac",
)


@dataclass(frozen=True)
class EspeakVoice:
    """One synthetic speaker: a language voice, a variant and prosody settings.

    rate: words per minute (espeak accepts 80-450; 175 is its default).
    pitch, pitch_range: 0-100 (espeak's defaults are 50 and 50).
    """

    language: str
    variant: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50

    def __post_init__(self):
        if self.language not in ENGLISH_VOICES:
            raise ValueError(
                f"EspeakVoice: language={self.language!r} is not one of the English voices "
                f"{ENGLISH_VOICES}; pick one of those."
            )
        if not 80 <= self.rate <= 450:
            raise ValueError(f"EspeakVoice: rate={self.rate} words/minute is outside espeak's 80-450.")
        for name in ("pitch", "pitch_range"):
            value = getattr(self, name)
            if not 0 <= value <= 100:
                raise ValueError(f"EspeakVoice: {name}={value} must lie in 0-100.")

    @property
    def name(self) -> str:
        """The name given to espeak_SetVoiceByName, e.g. 'en-us+f3'."""
        return f"{self.language}+{self.variant}" if self.variant else self.language

    @property
    def speaker_id(self) -> str:
        """A readable, unique id for this speaker."""
        return f"{self.language}+{self.variant or 'default'}_r{self.rate}_p{self.pitch}_g{self.pitch_range}"


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakSynthesizer:
    """Text -> float32 waveform in [-1, 1] at espeak's native rate (22,050 Hz).

    Output is bit-identical for the same seed and the same sequence of `synthesize` calls
    in a fresh process (espeak keeps global state between utterances).

    >>> synth = EspeakSynthesizer()
    >>> wave = synth.synthesize("Hello there.", EspeakVoice("en-us", "f3"))
    """

    _instance_made = False

    def __init__(self, seed: int = 0, library_path: str | None = None, data_path: str | None = None):
        if library_path is None or data_path is None:
            try:
                import espeakng_loader
            except ImportError as error:  # pragma: no cover - it is a core dependency
                raise ImportError(
                    "EspeakSynthesizer needs the `espeakng-loader` package (pip install espeakng-loader), "
                    "which ships the espeak-ng library and its data."
                ) from error
            library_path = library_path or espeakng_loader.get_library_path()
            data_path = data_path or espeakng_loader.get_data_path()
        if not os.path.exists(library_path):
            raise FileNotFoundError(f"EspeakSynthesizer: no espeak-ng library at {library_path}.")
        if not os.path.isdir(data_path):
            raise FileNotFoundError(f"EspeakSynthesizer: no espeak-ng data folder at {data_path}.")
        self._lib = ctypes.cdll.LoadLibrary(library_path)
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self._lib.espeak_SetVoiceByName.restype = ctypes.c_int
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_SetParameter.restype = ctypes.c_int
        self._lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._lib.espeak_ng_SetRandSeed.restype = None
        self._lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._lib.espeak_Synth.restype = ctypes.c_int
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        self.sample_rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (returned {self.sample_rate}) with data at {data_path}.")
        self._chunks: list[np.ndarray] = []

        def collect(samples, count, events):
            if count > 0:
                self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
            return 0  # 0 = go on synthesising

        self._callback = _SYNTH_CALLBACK(collect)  # kept on self so it is never garbage-collected
        self._lib.espeak_SetSynthCallback(self._callback)
        self._current_voice: EspeakVoice | None = None
        # espeak draws random numbers (pitch flutter, breath noise); its own generator is seeded
        # here. Some state (e.g. the flutter phase) also carries from one utterance to the next
        # and survives espeak_Terminate, so output is reproducible for the same sequence of
        # calls in a fresh process: the corpus builder synthesises each speaker in its own
        # process for that reason.
        self._lib.espeak_ng_SetRandSeed(int(seed))

    def set_voice(self, voice: EspeakVoice) -> None:
        if voice == self._current_voice:
            return
        status = self._lib.espeak_SetVoiceByName(voice.name.encode())
        if status != 0:
            raise ValueError(
                f"espeak does not know the voice {voice.name!r} (espeak_SetVoiceByName returned {status}); "
                f"use a language from ENGLISH_VOICES and a variant from SPEECH_VARIANTS."
            )
        for parameter, value in (
            (_PARAM_RATE, voice.rate),
            (_PARAM_PITCH, voice.pitch),
            (_PARAM_RANGE, voice.pitch_range),
            (_PARAM_VOLUME, 100),
            (_PARAM_WORDGAP, 0),
        ):
            status = self._lib.espeak_SetParameter(parameter, value, 0)
            if status != 0:
                raise RuntimeError(f"espeak_SetParameter({parameter}, {value}) failed with status {status}.")
        self._current_voice = voice

    def synthesize(self, text: str, voice: EspeakVoice) -> np.ndarray:
        """The waveform of `text` read by `voice`, float32 in [-1, 1] at `self.sample_rate`."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"synthesize: text must be a non-empty string, got {text!r}.")
        self.set_voice(voice)
        self._chunks = []
        encoded = text.encode("utf-8") + b"\0"
        buffer = ctypes.create_string_buffer(encoded)
        status = self._lib.espeak_Synth(buffer, len(encoded), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} on text {text!r}.")
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        self._chunks = []
        return samples.astype(np.float32) / 32768.0
