"""valle.spectrogram: log-mel spectrograms and the hand-written PNG encoder (read back here with zlib alone)."""

import struct
import zlib

import numpy as np
import pytest

from valle.spectrogram import colormap, encode_png, log_mel_spectrogram, write_spectrogram_png

SR = 24_000


def read_png(data: bytes) -> np.ndarray:
    """A minimal reader for the PNGs written here (8-bit RGB, no interlace, filter 0): checks every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    position, chunks = 8, []
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        position += 12 + length
    assert position == len(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(raw) == height * (1 + 3 * width)
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert not rows[:, 0].any(), "every row should use filter type 0"
    return rows[:, 1:].reshape(height, width, 3)


def tone(seconds, frequency=1000.0, amplitude=0.5, sampling_rate=SR):
    time = np.arange(int(seconds * sampling_rate)) / sampling_rate
    return (amplitude * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def brightness(pixels):
    return pixels.astype(float) @ np.array([0.2126, 0.7152, 0.0722])


def test_encode_png_round_trips_exact_pixels(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    assert np.array_equal(read_png(encode_png(pixels)), pixels)
    with pytest.raises(ValueError, match="height, width, 3"):
        encode_png(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4, 3), dtype=np.float32))


def test_log_mel_puts_a_tone_in_its_band_and_clips_to_80_db():
    spectrogram = log_mel_spectrogram(tone(1.0, 1000.0), SR)
    assert spectrogram.shape == (80, 101)  # 80 bands, 10 ms hop: frames at 0, 10, ..., 1000 ms
    assert spectrogram.dtype == np.float32
    loudest_band = int(np.median(spectrogram.argmax(axis=0)))
    assert 15 < loudest_band < 40  # 1 kHz sits in the lower middle of a 0-12 kHz mel scale
    assert spectrogram.argmax(axis=0)[10:-10].tolist() == [loudest_band] * 81
    assert -12 < spectrogram.max() < 0  # amplitude 0.5: about -6 dB re full scale
    assert spectrogram.max() - spectrogram.min() == pytest.approx(80.0, abs=1e-3)
    higher = log_mel_spectrogram(tone(1.0, 4000.0), SR)
    assert int(np.median(higher.argmax(axis=0))) > loudest_band
    # Other sampling rates keep 10 ms frames; silence is finite.
    assert log_mel_spectrogram(tone(0.5, 500.0, sampling_rate=16_000), 16_000).shape == (80, 51)
    assert np.isfinite(log_mel_spectrogram(np.zeros(100), SR)).all()


@pytest.mark.parametrize(
    "waveform, rate, words",
    [
        (np.zeros(0), SR, "empty waveform"),
        (np.zeros((2, 100)), SR, "1-D"),
        (np.zeros(()), SR, "1-D"),
        (np.array([0.0, np.nan]), SR, "NaN"),
        (np.zeros(100), 0, "sampling_rate"),
        (np.zeros(100), 24000.5, "sampling_rate"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(tmp_path, waveform, rate, words):
    with pytest.raises(ValueError, match=words):
        log_mel_spectrogram(waveform, rate)
    with pytest.raises(ValueError, match=words):
        write_spectrogram_png(tmp_path / "x.png", [(tone(0.1), SR), (waveform, rate)])
    assert not (tmp_path / "x.png").exists()


def test_write_spectrogram_png_stacks_panels_on_one_time_scale(tmp_path):
    prompt, output = tone(1.0, 1000.0), np.zeros(SR // 2, dtype=np.float32)  # a loud tone, then half a second of silence
    image = write_spectrogram_png(tmp_path / "out" / "cmp.png", [(prompt, SR), (output, SR)], pixels_per_second=100)
    pixels = read_png(image.path.read_bytes())
    assert pixels.shape == (image.height, image.width, 3)
    assert image.width == 100  # the longest panel, 1 s at 100 px/s
    assert image.panel_rows == [(0, 160), (162, 322)]  # 80 bands x 2 rows, a 2-row separator between
    assert image.height == 322 + 8  # and the time axis below
    separator = pixels[160:162]
    assert (separator == separator[0, 0]).all() and brightness(separator[0, :1])[0] > 200

    top = pixels[0:160]
    band_rows = brightness(top[:, 20:80]).mean(axis=1)  # away from the tone's clicks at its ends
    loudest_row = int(band_rows.argmax())
    assert 80 < loudest_row < 160  # 1 kHz: in the lower half of the panel (low frequencies at the bottom)
    assert band_rows[loudest_row] > 150 and band_rows[loudest_row] > band_rows[:40].mean() + 100
    bottom = pixels[162:322]
    silence = brightness(bottom[:, :45])  # the output's 0.5 s of silence: the darkest colour
    assert silence.max() < 5 and band_rows[loudest_row] > silence.max() + 100
    after_end = bottom[:, 55:]  # no audio after 0.5 s: a uniform fill, distinct from the colour scale
    assert (after_end == after_end[0, 0]).all()
    assert not (colormap() == after_end[0, 0]).all(axis=1).any()


def test_durations_compare_across_rates_and_panel_counts(tmp_path):
    short = tone(0.5, 300.0, sampling_rate=16_000)
    image = write_spectrogram_png(tmp_path / "a.png", [(short, 16_000), (tone(2.0), SR)], pixels_per_second=50,
                                  rows_per_band=1, n_mels=40)
    assert (image.width, image.panel_rows) == (100, [(0, 40), (42, 82)])
    assert image.durations == [0.5, 2.0]
    pixels = read_png(image.path.read_bytes())
    assert (pixels[0:40, 26:] == pixels[0, 99]).all()  # the 0.5 s prompt ends at column 25
    single = write_spectrogram_png(tmp_path / "b.png", [(tone(0.3), SR)], axis_rows=0)
    assert (single.width, single.height, single.panel_rows) == (30, 160, [(0, 160)])
    assert read_png(single.path.read_bytes()).shape == (160, 30, 3)
    with pytest.raises(ValueError, match="at least one"):
        write_spectrogram_png(tmp_path / "c.png", [])


def test_colormap_runs_dark_to_bright():
    table = colormap()
    assert table.shape == (256, 3) and table.dtype == np.uint8
    luminance = brightness(table)
    assert luminance[0] < 5 and luminance[-1] > 230
    assert (np.diff(luminance) > -0.5).all()  # never darker as the level rises
