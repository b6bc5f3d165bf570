"""Data preparation: ids and codes as the processor makes them, bad rows reported, interrupted runs resumed."""

import json

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch

from tests.utils import TINY_CORPUS, tiny_codec, tiny_tokenizer, tiny_waveform
from valle import data as data_module
from valle.data import prepare_dataset


@pytest.fixture(scope="module")
def processor():
    from processing_valle import VallEProcessor

    torch.set_num_threads(1)
    return VallEProcessor(tiny_tokenizer(), codec=tiny_codec())


def recordings(folder, count=9, broken=(4,), silent_text=(7,)):
    """A LibriTTS-style folder: speaker/chapter/utt.wav + utt.normalized.txt, mixed sampling rates."""
    for i in range(count):
        chapter = folder / f"spk{i % 2}" / "ch1"
        chapter.mkdir(parents=True, exist_ok=True)
        rate = 16000 if i % 3 else 24000
        if i in broken:
            (chapter / f"u{i}.wav").write_bytes(b"not a recording")
        else:
            sf.write(chapter / f"u{i}.wav", tiny_waveform(0.3 + 0.07 * i, sampling_rate=rate, seed=i), rate)
        (chapter / f"u{i}.normalized.txt").write_text("" if i in silent_text else TINY_CORPUS[i % len(TINY_CORPUS)])
    return folder


def test_prepared_rows_match_the_processor_and_bad_rows_are_reported(tmp_path, processor):
    source = recordings(tmp_path / "wavs")
    report = prepare_dataset(source, processor, tmp_path / "out", shard_size=4, codec_batch_size=4, min_seconds=0.1,
                             progress=False)
    assert report.complete and (report.rows, report.kept, report.bad) == (9, 7, 2)
    bad = [json.loads(line) for line in (tmp_path / "out" / "bad_rows.jsonl").read_text().splitlines()]
    reasons = {entry["id"]: entry["reason"] for entry in bad}
    assert set(reasons) == {"spk0/ch1/u4", "spk1/ch1/u7"}
    assert "could not read" in reasons["spk0/ch1/u4"] and "empty transcript" in reasons["spk1/ch1/u7"]

    prepared = datasets.load_from_disk(str(tmp_path / "out"))
    assert len(prepared) == 7 and {"id", "speaker", "text", "input_ids", "codes", "num_frames"} <= set(prepared.column_names)
    hop = processor.hop_length
    for row in prepared:
        path = source / f"{row['id']}.wav"
        audio, rate = sf.read(path, dtype="float32")
        from processing_valle import load_audio

        samples = load_audio(audio, rate, processor.sampling_rate)
        expected = processor.encode_audio(samples[: samples.shape[0] // hop * hop], sampling_rate=processor.sampling_rate)
        # Batched encoding (4 clips of different lengths per codec call) gives exactly the one-at-a-time codes.
        assert np.array_equal(np.asarray(row["codes"]), expected.numpy()), row["id"]
        assert row["num_frames"] == expected.shape[0]
        assert row["input_ids"] == processor.tokenizer(row["text"])["input_ids"]


def test_duration_filter_is_counted_not_reported_as_bad(tmp_path, processor):
    source = recordings(tmp_path / "wavs", count=6, broken=(), silent_text=())
    report = prepare_dataset(source, processor, tmp_path / "out", min_seconds=0.45, max_seconds=0.6, progress=False)
    durations = [0.3 + 0.07 * i for i in range(6)]
    assert report.too_short == sum(d < 0.45 for d in durations)
    assert report.too_long == sum(d > 0.6 for d in durations)
    assert report.bad == 0 and report.kept == 6 - report.too_short - report.too_long


def test_interrupted_preparation_resumes_and_loses_nothing(tmp_path, processor, monkeypatch):
    source = recordings(tmp_path / "wavs")
    reference = prepare_dataset(source, processor, tmp_path / "straight", shard_size=2, min_seconds=0.1, progress=False)

    # A crash in the middle of shard 3 (of 5): shards 1-2 are kept, shard 3 is redone.
    calls = {"n": 0}
    original = data_module._BatchPreparer.__call__

    def crashing(self, batch, indices):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("machine lost")
        return original(self, batch, indices)

    monkeypatch.setattr(data_module._BatchPreparer, "__call__", crashing)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(source, processor, tmp_path / "resumed", shard_size=2, batch_size=2, min_seconds=0.1,
                        progress=False)
    manifest = json.loads((tmp_path / "resumed" / "manifest.json").read_text())
    assert sorted(manifest["shards"]) == ["0", "1"] and not manifest["complete"]
    monkeypatch.setattr(data_module._BatchPreparer, "__call__", original)

    # `max_shards` stops cleanly too; then a plain call finishes.
    partial = prepare_dataset(source, processor, tmp_path / "resumed", shard_size=2, batch_size=2, min_seconds=0.1,
                              max_shards=1, progress=False)
    assert not partial.complete and partial.shards_done == 3
    final = prepare_dataset(source, processor, tmp_path / "resumed", shard_size=2, batch_size=2, min_seconds=0.1,
                            progress=False)
    assert final.complete and (final.rows, final.kept, final.bad) == (reference.rows, reference.kept, reference.bad)
    a = datasets.load_from_disk(str(tmp_path / "straight"))
    b = datasets.load_from_disk(str(tmp_path / "resumed"))
    assert a["id"] == b["id"] and a["codes"] == b["codes"] and a["input_ids"] == b["input_ids"]
    lines = (tmp_path / "resumed" / "bad_rows.jsonl").read_text().splitlines()
    assert len(lines) == 2  # each bad row once, however often its shard ran

    # Continuing with other settings would mix two preparations: refused, with the way out.
    with pytest.raises(ValueError, match="other settings.*--overwrite"):
        prepare_dataset(source, processor, tmp_path / "resumed", shard_size=3, progress=False)


def test_source_errors_say_what_to_do(tmp_path, processor):
    with pytest.raises(ValueError, match="No recordings"):
        prepare_dataset(tmp_path, processor, tmp_path / "out", progress=False)
    table = datasets.Dataset.from_dict({"audio": ["x.wav"], "sentence": ["hello"]})
    with pytest.raises(ValueError, match="text column 'text'.*--text-column"):
        prepare_dataset(table, processor, tmp_path / "out", progress=False)


def test_hub_style_columns_speaker_id_is_found_and_empty_sources_are_named(tmp_path, processor):
    # LibriTTS on the Hub: the transcript is `text_normalized` (given), the speaker `speaker_id` (found).
    table = data_module.load_source(str(recordings(tmp_path / "wavs", count=4, broken=(), silent_text=())))
    table = table.rename_columns({"text": "text_normalized", "speaker": "speaker_id"})
    prepare_dataset(table, processor, tmp_path / "out", text_column="text_normalized", min_seconds=0.1, progress=False)
    prepared = datasets.load_from_disk(str(tmp_path / "out"))
    assert sorted(prepared["speaker"]) == sorted(table["speaker_id"])
    with pytest.raises(ValueError, match="has no rows.*--split"):
        prepare_dataset(table.select([]), processor, tmp_path / "empty", text_column="text_normalized", progress=False)


def test_codec_batch_size_defaults_to_one_clip_on_the_cpu(tmp_path, processor, monkeypatch):
    seen = []
    original = data_module._BatchPreparer.__init__

    def spy(self, processor, settings, device, threads=None):
        seen.append((device, settings["codec_batch_size"]))
        original(self, processor, settings, device, threads=threads)

    monkeypatch.setattr(data_module._BatchPreparer, "__init__", spy)
    report = prepare_dataset(recordings(tmp_path / "wavs", count=3, broken=(), silent_text=()), processor,
                             tmp_path / "out", device="cpu", min_seconds=0.1, progress=False)
    assert report.complete and seen == [("cpu", 1)]
    with pytest.raises(ValueError, match="codec_batch_size"):
        prepare_dataset(tmp_path / "wavs", processor, tmp_path / "other", codec_batch_size=0, progress=False)
