"""Log-mel spectrograms and a dependency-free PNG writer to look at them.

`valle synthesize` writes `out.png` beside `out.wav`: the voice prompt on top, the output below, on one time scale
(the same number of pixels per second in every panel, so durations compare at a glance) and one colour scale
(dark = quiet, bright = loud). Everything here is numpy, `zlib` and `struct`: no matplotlib, no PIL.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Power below this counts as silence (-120 dB): keeps log10 finite for digital silence.
_POWER_FLOOR = 1e-12
_FLOOR_DB = 10.0 * np.log10(_POWER_FLOOR)

# A perceptual dark-to-bright colour scale: luminance rises monotonically through these anchors (black, indigo,
# plum, brick red, amber, pale cream); the 256-entry table interpolates linearly between them.
_ANCHORS = np.array(
    [
        (0, 0, 0),
        (36, 14, 82),
        (122, 32, 118),
        (206, 66, 72),
        (246, 152, 38),
        (252, 246, 186),
    ],
    dtype=np.float64,
)
# Where a panel has no audio (it is shorter than the longest one), and the lines drawn on the image.
_NO_AUDIO = (52, 60, 70)
_SEPARATOR = (235, 235, 235)
_AXIS_BACKGROUND = (20, 20, 20)
_TICK = (200, 200, 200)


def colormap(num_colors: int = 256) -> np.ndarray:
    """The colour scale as a `(num_colors, 3)` uint8 table, darkest first."""
    positions = np.linspace(0.0, len(_ANCHORS) - 1, num_colors)
    channels = [np.interp(positions, np.arange(len(_ANCHORS)), _ANCHORS[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, axis=1)).astype(np.uint8)


def _check_waveform(waveform, sampling_rate) -> np.ndarray:
    samples = np.asarray(waveform)
    if samples.ndim != 1:
        raise ValueError(
            f"log_mel_spectrogram needs a 1-D (mono) waveform; got an array of shape {samples.shape}. "
            "Average the channels (or pick one) first."
        )
    if samples.size == 0:
        raise ValueError("log_mel_spectrogram got an empty waveform (0 samples); there is nothing to draw.")
    if not np.issubdtype(samples.dtype, np.number) or np.iscomplexobj(samples):
        raise ValueError(f"log_mel_spectrogram needs real-valued samples; got dtype {samples.dtype}.")
    samples = samples.astype(np.float64)
    if not np.all(np.isfinite(samples)):
        raise ValueError("log_mel_spectrogram got NaN or infinite samples; clean the waveform first.")
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be a positive integer (Hz); got {sampling_rate!r}.")
    return samples


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sampling_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None):
    """Triangular filters, equally spaced on the (HTK) mel scale: `(n_mels, n_fft // 2 + 1)`.

    A filter narrower than the FFT's bin spacing (low bands at a short FFT) would catch no bin at all; it then takes
    the bin nearest its centre, so that no band is blank for lack of resolution. Bands above the Nyquist frequency
    stay empty (silent)."""
    nyquist = sampling_rate / 2.0
    f_max = nyquist if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max:
        raise ValueError(f"need 0 <= f_min < f_max; got f_min={f_min}, f_max={f_max}.")
    bin_hz = np.linspace(0.0, nyquist, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_hz[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - bin_hz[None, :]) / np.maximum(upper - centre, 1e-9)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    for band in np.flatnonzero(weights.sum(axis=1) == 0):
        if edges[band + 1] <= nyquist:
            weights[band, int(np.argmin(np.abs(bin_hz - edges[band + 1])))] = 1.0
    return weights


def default_frame_sizes(sampling_rate: int) -> tuple[int, int]:
    """(n_fft, hop_length): a window of at least 40 ms rounded up to a power of two, a hop of 10 ms."""
    n_fft = 1 << max(4, int(np.ceil(np.log2(0.04 * sampling_rate))))
    hop_length = max(1, int(round(0.01 * sampling_rate)))
    return n_fft, hop_length


def log_mel_spectrogram(
    waveform: np.ndarray,
    sampling_rate: int,
    n_mels: int = 80,
    n_fft: int | None = None,
    hop_length: int | None = None,
    f_max: float | None = None,
    top_db: float = 80.0,
) -> np.ndarray:
    """The log-mel power spectrogram of a mono waveform: `(n_mels, frames)` float32 in dB, lowest band first.

    Frame `i` is centred on sample `i * hop_length` (the signal is zero-padded by half a window on each side), with a
    Hann window. Levels are dB re a full-scale sine (a sine of amplitude 1 centred on a bin reads about 0 dB in its
    band), floored at the loudest value minus `top_db`. Defaults: `n_fft` >= 40 ms, hop 10 ms (100 frames/s),
    `f_max` = Nyquist. Raises `ValueError` for an empty, multi-channel or non-finite waveform."""
    samples = _check_waveform(waveform, sampling_rate)
    if n_mels < 1:
        raise ValueError(f"n_mels must be at least 1; got {n_mels}.")
    if top_db <= 0:
        raise ValueError(f"top_db must be positive; got {top_db}.")
    default_fft, default_hop = default_frame_sizes(sampling_rate)
    n_fft = n_fft or default_fft
    hop_length = hop_length or default_hop
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    padded = np.pad(samples, (n_fft // 2, n_fft // 2))
    num_frames = 1 + len(samples) // hop_length
    needed = (num_frames - 1) * hop_length + n_fft
    if len(padded) < needed:
        padded = np.pad(padded, (0, needed - len(padded)))
    starts = np.arange(num_frames) * hop_length
    frames = padded[starts[:, None] + np.arange(n_fft)[None, :]] * window
    spectrum = np.fft.rfft(frames, axis=1)
    power = (np.abs(spectrum) / (window.sum() / 2.0)) ** 2  # (frames, bins), full-scale sine -> 1
    mel = mel_filterbank(sampling_rate, n_fft, n_mels, f_max=f_max) @ power.T
    decibels = 10.0 * np.log10(np.maximum(mel, _POWER_FLOOR))
    decibels = np.maximum(decibels, decibels.max() - top_db)
    return decibels.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# PNG


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of a `(height, width, 3)` uint8 array (no filtering: filter type 0 on every row)."""
    image = np.asarray(rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"encode_png needs a (height, width, 3) array; got shape {image.shape}.")
    if image.dtype != np.uint8:
        raise ValueError(f"encode_png needs uint8 pixels; got {image.dtype}.")
    height, width = image.shape[:2]
    rows = np.concatenate([np.zeros((height, 1), dtype=np.uint8), image.reshape(height, width * 3)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit, truecolour, deflate, no filter, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
        + _chunk(b"IEND", b"")
    )


@dataclass
class SpectrogramImage:
    """What `write_spectrogram_png` drew: the file, its size, and each panel's rows `[top, bottom)` (top first)."""

    path: Path
    width: int
    height: int
    panel_rows: list[tuple[int, int]]
    pixels_per_second: float
    durations: list[float]


def write_spectrogram_png(
    path,
    panels: list[tuple[np.ndarray, int]],
    pixels_per_second: float = 100.0,
    n_mels: int = 80,
    rows_per_band: int = 2,
    top_db: float = 80.0,
    separator_rows: int = 2,
    axis_rows: int = 8,
) -> SpectrogramImage:
    """Writes a PNG of the log-mel spectrograms of `panels` (`(waveform, sampling_rate)` pairs), stacked from the top
    in the order given (prompt first, then the output), low frequencies at the bottom of each panel.

    All panels share one time scale (`pixels_per_second`; the image is as wide as the longest panel, a shorter
    panel is filled with slate grey after its end), one frequency range (0 Hz to the lowest Nyquist frequency among
    the panels) and one colour scale (the loudest value of all panels is brightest; `top_db` below it is black).
    Panels are `n_mels * rows_per_band` rows high, separated by a `separator_rows` light line; a strip of
    `axis_rows` at the bottom has a tick every second (and every 0.1 s when they are at least 5 pixels apart)."""
    if not panels:
        raise ValueError("write_spectrogram_png needs at least one (waveform, sampling_rate) panel.")
    if pixels_per_second <= 0 or rows_per_band < 1 or separator_rows < 0 or axis_rows < 0:
        raise ValueError(
            "pixels_per_second must be positive, rows_per_band at least 1, separator_rows and axis_rows >= 0; "
            f"got {pixels_per_second}, {rows_per_band}, {separator_rows}, {axis_rows}."
        )
    checked = []
    for index, panel in enumerate(panels):
        if not isinstance(panel, (tuple, list)) or len(panel) != 2:
            raise ValueError(f"panel {index} must be a (waveform, sampling_rate) pair; got {type(panel).__name__}.")
        try:
            checked.append((_check_waveform(*panel), int(panel[1])))
        except ValueError as error:
            raise ValueError(f"panel {index}: {error}") from None
    f_max = min(rate for _, rate in checked) / 2.0
    spectrograms, hops, durations = [], [], []
    for samples, rate in checked:
        _, hop = default_frame_sizes(rate)
        spectrograms.append(log_mel_spectrogram(samples, rate, n_mels=n_mels, hop_length=hop, f_max=f_max, top_db=top_db))
        hops.append(hop / rate)
        durations.append(len(samples) / rate)

    loudest = max(float(s.max()) for s in spectrograms)
    quietest = max(loudest - top_db, _FLOOR_DB)
    span = loudest - quietest
    table = colormap()

    width = max(1, int(np.ceil(max(durations) * pixels_per_second)))
    panel_height = n_mels * rows_per_band
    height = len(panels) * panel_height + (len(panels) - 1) * separator_rows + axis_rows
    image = np.empty((height, width, 3), dtype=np.uint8)
    column_times = (np.arange(width) + 0.5) / pixels_per_second
    panel_rows, top = [], 0
    for index, (spectrogram, hop_seconds, duration) in enumerate(zip(spectrograms, hops, durations)):
        if index:
            image[top : top + separator_rows] = _SEPARATOR
            top += separator_rows
        frames = np.minimum(np.rint(column_times / hop_seconds).astype(int), spectrogram.shape[1] - 1)
        levels = spectrogram[::-1, frames]  # highest band on top
        if span > 0:
            scaled = np.clip((levels - quietest) / span, 0.0, 1.0)
        else:  # all silence (or one constant level): nothing stands out, draw it dark
            scaled = np.zeros_like(levels)
        indices = np.rint(scaled * (len(table) - 1)).astype(np.intp)
        pixels = np.repeat(table[indices], rows_per_band, axis=0)
        pixels[:, column_times >= duration] = _NO_AUDIO
        image[top : top + panel_height] = pixels
        panel_rows.append((top, top + panel_height))
        top += panel_height
    if axis_rows:
        axis = image[top:]
        axis[:] = _AXIS_BACKGROUND
        tenths = int(np.floor(width / pixels_per_second * 10)) + 1
        for tenth in range(tenths):
            column = int(round(tenth / 10 * pixels_per_second))
            if column >= width:
                break
            if tenth % 10 == 0:
                axis[:, column] = _TICK
            elif pixels_per_second / 10 >= 5:
                axis[: max(1, axis_rows // 2), column] = _TICK
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(image))
    return SpectrogramImage(
        path=path, width=width, height=height, panel_rows=panel_rows,
        pixels_per_second=float(pixels_per_second), durations=durations,
    )
