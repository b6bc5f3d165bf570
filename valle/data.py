"""Data preparation: any 🤗 `datasets` source with audio and transcripts -> phoneme ids and EnCodec codes, once.

    from valle.data import prepare_dataset
    report = prepare_dataset("path/to/wavs", processor, "data/prepared", speaker_column="speaker")
    dataset = datasets.load_from_disk("data/prepared")   # id, text, [speaker], input_ids, codes, num_frames, seconds

The work is cut into shards of `shard_size` rows. Each finished shard is saved and recorded in
`output_dir/manifest.json` before the next starts, so an interrupted run (Ctrl-C, a lost machine, `max_shards`)
continues where it stopped when called again with the same settings, and loses nothing. Rows that cannot be used
(unreadable or silent audio, empty text, text without phonemes) are skipped, counted, and listed with the reason in
`output_dir/bad_rows.jsonl`; rows outside the duration limits are counted separately.

Codec encoding is batched (on the GPU when there is one). Each clip is trimmed to whole codec frames first (at most
one hop, 13 ms at 24 kHz, at its very end): EnCodec 24 kHz is causal, so a trimmed clip gets exactly the same codes
in a zero-padded batch as alone, while an untrimmed one would see its last frame change with the batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
BAD_ROWS = "bad_rows.jsonl"
SHARDS = "shards"
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus")


@dataclass
class PreparationReport:
    """What a preparation did: rows read, kept, filtered by duration, bad (with reasons in `bad_rows.jsonl`)."""

    output_dir: str
    rows: int = 0
    kept: int = 0
    too_short: int = 0
    too_long: int = 0
    bad: int = 0
    shards_done: int = 0
    num_shards: int = 0
    seconds: float = 0.0
    complete: bool = False
    bad_examples: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        state = "complete" if self.complete else f"stopped after {self.shards_done}/{self.num_shards} shards"
        return (
            f"{state}: {self.rows} rows read, {self.kept} kept ({self.seconds / 3600:.2f} h of audio), "
            f"{self.too_short} too short, {self.too_long} too long, {self.bad} bad"
            + (f" (reasons in {Path(self.output_dir) / BAD_ROWS})" if self.bad else "")
        )


# ---------------------------------------------------------------------------------------------------------------
# Sources


def audio_folder_dataset(folder: str | Path, transcript_suffixes=(".normalized.txt", ".txt")):
    """
    A folder of recordings -> a `datasets.Dataset` with `audio` (file path), `text`, `speaker` and `id`.

    Transcripts come from a file beside each recording with the same stem (LibriTTS writes `utt.wav` +
    `utt.normalized.txt`), or from a `metadata.csv` / `metadata.jsonl` at the top (columns `file_name` and `text` or
    `transcription`, as 🤗 audiofolder expects). The speaker is the first sub-folder of the path (LibriTTS:
    `speaker/chapter/utt.wav`), or the metadata's `speaker` column.
    """
    import csv

    import datasets

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{str(folder)!r} is not a folder of recordings.")
    rows = {"audio": [], "text": [], "speaker": [], "id": []}
    metadata = [folder / "metadata.csv", folder / "metadata.jsonl"]
    existing = [path for path in metadata if path.exists()]
    if existing:
        path = existing[0]
        with open(path, encoding="utf-8") as handle:
            records = list(csv.DictReader(handle)) if path.suffix == ".csv" else [json.loads(l) for l in handle if l.strip()]
        for number, record in enumerate(records):
            if "file_name" not in record:
                raise ValueError(f"{path}: row {number} has no 'file_name' column (the path of its recording).")
            text = record.get("text", record.get("transcription"))
            if text is None:
                raise ValueError(f"{path}: needs a 'text' (or 'transcription') column with each recording's words.")
            relative = Path(record["file_name"])
            rows["audio"].append(str(folder / relative))
            rows["text"].append(text)
            rows["speaker"].append(str(record.get("speaker", relative.parts[0] if len(relative.parts) > 1 else "")))
            rows["id"].append(str(relative.with_suffix("")))
    else:
        for audio in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
            stem = audio.with_suffix("")
            transcript = next((Path(str(stem) + s) for s in transcript_suffixes if Path(str(stem) + s).exists()), None)
            relative = audio.relative_to(folder)
            rows["audio"].append(str(audio))
            # A missing transcript is a bad row, reported at preparation, not a reason to stop here.
            rows["text"].append(transcript.read_text(encoding="utf-8").strip() if transcript else "")
            rows["speaker"].append(relative.parts[0] if len(relative.parts) > 1 else "")
            rows["id"].append(str(relative.with_suffix("")))
    if not rows["audio"]:
        raise ValueError(
            f"No recordings ({', '.join(AUDIO_EXTENSIONS)}) found under {str(folder)!r}. Put the audio files there, "
            "each with a transcript beside it (utt.wav + utt.txt) or listed in metadata.csv (file_name,text)."
        )
    return datasets.Dataset.from_dict(rows)


def load_source(source, split: str | None = "train", config_name: str | None = None):
    """A `Dataset`, a `DatasetDict` (+ `split`), a `save_to_disk` folder, a folder of recordings or a Hub name."""
    import datasets

    if isinstance(source, datasets.DatasetDict):
        if split not in source:
            raise ValueError(f"The dataset has no split {split!r}; it has {list(source)}. Pass `split=`.")
        return source[split]
    if isinstance(source, datasets.Dataset):
        return source
    if not isinstance(source, (str, Path)):
        raise TypeError(f"`source` must be a datasets.Dataset, a folder or a Hub dataset name, got {type(source).__name__}.")
    path = Path(source)
    if path.is_dir():
        if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            return load_source(datasets.load_from_disk(str(path)), split)
        return audio_folder_dataset(path)
    if path.exists():
        raise ValueError(f"{str(source)!r} is a file; give a folder of recordings, a saved dataset or a Hub name.")
    try:
        return datasets.load_dataset(str(source), config_name, split=split)
    except Exception as error:  # the Hub's errors vary: name them all the same way
        raise ValueError(
            f"Could not load {str(source)!r} as a local folder or a Hub dataset ({type(error).__name__}: {error}). "
            "Check the name (and `--config`/`--split`), your network, or point to a local folder."
        ) from error


# ---------------------------------------------------------------------------------------------------------------
# One batch of rows -> ids and codes


class _BatchPreparer:
    """The function `datasets.map` runs on each batch; picklable for `num_proc` workers."""

    def __init__(self, processor, settings: dict, device: str, threads: int | None = None):
        self.processor = processor
        self.settings = settings
        self.device = device
        # Torch threads per `map` worker: each worker would otherwise start one per core, and N workers x N
        # threads on N cores spin against each other (measured 3x slower on 2 cores with num_proc=2).
        self.threads = threads
        self.offset = 0  # the source row number of the shard's first row

    def __call__(self, batch: dict, indices: list[int]) -> dict:
        from processing_valle import load_audio

        import torch

        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        s = self.settings
        processor = self.processor
        codec = processor.codec
        if self.device != "cpu" and next(codec.parameters()).device.type != self.device.split(":")[0]:
            codec.to(self.device)
        rate, hop = processor.sampling_rate, processor.hop_length
        size = len(indices)
        out: dict[str, list] = {
            "id": [], "input_ids": [], "codes": [], "num_frames": [], "seconds": [], "_status": [], "_index": indices
        }
        ids = batch[s["id_column"]] if s["id_column"] else [str(self.offset + i) for i in indices]
        texts = batch[s["text_column"]]
        waveforms: list[np.ndarray | None] = [None] * size
        for i in range(size):
            out["id"].append(str(ids[i]))
            status = ""
            try:
                text = texts[i]
                if not isinstance(text, str) or not text.strip():
                    raise ValueError("empty transcript")
                samples = load_audio(batch[s["audio_column"]][i], None, rate, name="audio")
                seconds = samples.shape[0] / rate
                if seconds < s["min_seconds"]:
                    status = "too_short"
                elif s["max_seconds"] and seconds > s["max_seconds"]:
                    status = "too_long"
                else:
                    waveforms[i] = samples[: max(hop, samples.shape[0] // hop * hop)]
            except Exception as error:  # any unreadable row is reported with its reason, never fatal
                status = f"bad: {type(error).__name__}: {error}"
                seconds = 0.0
            out["_status"].append(status)
            out["seconds"].append(float(seconds))
        # Phonemes for the usable rows: one espeak call for all, one per row only if that fails.
        usable = [i for i in range(size) if waveforms[i] is not None]
        phonemes = self._phonemes([texts[i] for i in usable])
        for i, result in zip(usable, phonemes):
            if isinstance(result, str):
                out["_status"][i] = f"bad: text: {result}"
                waveforms[i] = None
        phoneme_of = dict(zip(usable, phonemes))
        codes = self._encode([waveforms[i] for i in range(size)])
        for i in range(size):
            if waveforms[i] is None or isinstance(codes[i], str):
                if codes[i] is not None and isinstance(codes[i], str):
                    out["_status"][i] = f"bad: codec: {codes[i]}"
                out["input_ids"].append([])
                out["codes"].append([])
                out["num_frames"].append(0)
                continue
            out["input_ids"].append(phoneme_of[i])
            out["codes"].append(codes[i])
            out["num_frames"].append(len(codes[i]))
        return out

    def _phonemes(self, texts: list[str]) -> list:
        if not texts:
            return []
        tokenizer = self.processor.tokenizer
        options = {"language": self.settings["language"]} if self.settings["language"] else {}
        try:
            return tokenizer(texts, **options)["input_ids"]
        except (ValueError, TypeError):
            results = []
            for text in texts:
                try:
                    results.append(tokenizer(text, **options)["input_ids"])
                except (ValueError, TypeError) as error:
                    results.append(str(error))
            return results

    def _encode(self, waveforms: list) -> list:
        """Codes (frames x codebooks, nested lists) for each waveform, an error message for a failure, None for
        None. Batches of similar length, zero-padded (exact: see the module docstring)."""
        import torch

        processor = self.processor
        codec = processor.codec
        results: list = [None] * len(waveforms)
        order = sorted((i for i, w in enumerate(waveforms) if w is not None), key=lambda i: waveforms[i].shape[0])
        batch_size = self.settings["codec_batch_size"] if _batching_is_exact(codec) else 1
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            try:
                if len(chunk) == 1:
                    codes = [processor.encode_audio(waveforms[chunk[0]], sampling_rate=processor.sampling_rate)]
                else:
                    parameter = next(codec.parameters())
                    longest = waveforms[chunk[-1]].shape[0]
                    audio = torch.zeros(len(chunk), 1, longest, dtype=parameter.dtype)
                    for row, i in enumerate(chunk):
                        audio[row, 0, : waveforms[i].shape[0]] = torch.from_numpy(waveforms[i])
                    with torch.no_grad():
                        batch_codes = codec.encode(
                            audio.to(parameter.device), bandwidth=processor.codec_bandwidth
                        ).audio_codes[0]
                    hop = processor.hop_length
                    codes = [batch_codes[row, :, : waveforms[i].shape[0] // hop].T.cpu() for row, i in enumerate(chunk)]
                for i, item in zip(chunk, codes):
                    results[i] = item.to(torch.int16).tolist()
            except Exception as error:
                if len(chunk) > 1:  # find the culprit: one at a time
                    for i in chunk:
                        results[i] = self._encode([waveforms[i]])[0]
                else:
                    results[chunk[0]] = f"{type(error).__name__}: {error}"
        return results


def _batching_is_exact(codec) -> bool:
    """Zero-padded batches give the same codes as single clips only for a causal, unnormalised, unchunked EnCodec."""
    config = getattr(codec, "config", None)
    return bool(
        config is not None
        and getattr(config, "use_causal_conv", False)
        and not getattr(config, "normalize", True)
        and getattr(config, "chunk_length_s", None) is None
    )


# ---------------------------------------------------------------------------------------------------------------
# The resumable driver


def prepare_dataset(
    source,
    processor,
    output_dir: str | Path,
    *,
    split: str | None = "train",
    config_name: str | None = None,
    audio_column: str = "audio",
    text_column: str = "text",
    speaker_column: str | None = None,
    id_column: str | None = None,
    language: str | None = None,
    min_seconds: float = 0.5,
    max_seconds: float | None = 20.0,
    shard_size: int = 1000,
    batch_size: int = 32,
    codec_batch_size: int | None = None,
    num_proc: int | None = None,
    device: str | None = None,
    max_shards: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> PreparationReport:
    """
    Prepares `source` for training into `output_dir` (read it back with `datasets.load_from_disk(output_dir)`).

    Args:
        source: a `datasets.Dataset` / `DatasetDict`, a `save_to_disk` folder, a folder of recordings with
            transcripts (see `audio_folder_dataset`), or a Hub dataset name (`config_name`, `split`).
        processor (`VallEProcessor`): its tokenizer makes the phoneme ids, its codec the codes.
        audio_column, text_column, speaker_column, id_column: column names in the source. Audio may be file paths,
            `datasets` Audio (read as bytes, without torchcodec) or `{"array", "sampling_rate"}` dicts.
        language: espeak language for the phonemizer (default: the tokenizer's).
        min_seconds, max_seconds: keep recordings in this range (the paper trains on 10-20 s crops of LibriLight;
            LibriTTS recipes keep up to ~20 s).
        shard_size: rows per resumable shard. batch_size: rows per `map` batch. codec_batch_size: clips per codec
            call (default: 16 on a GPU, 1 on the CPU, where batches of zero-padded clips were 2x slower than
            one clip at a time with the lab codec). num_proc: `map` worker processes (CPU codec only).
            device: "cuda", "cpu"... (default: cuda if available).
        max_shards: prepare at most this many new shards, then stop (call again to continue).
        overwrite: discard what `output_dir` holds and start again.

    Returns a `PreparationReport`; `report.complete` is False when `max_shards` stopped it early.
    """
    import datasets
    import torch
    from tqdm.auto import tqdm

    output_dir = Path(output_dir)
    if shard_size < 1 or batch_size < 1 or (codec_batch_size is not None and codec_batch_size < 1):
        raise ValueError("`shard_size`, `batch_size` and `codec_batch_size` must be >= 1.")
    if min_seconds < 0 or (max_seconds is not None and max_seconds <= min_seconds):
        raise ValueError(f"Need 0 <= min_seconds < max_seconds, got {min_seconds} and {max_seconds}.")
    dataset = load_source(source, split, config_name)
    for role, column in (("audio", audio_column), ("text", text_column), ("speaker", speaker_column), ("id", id_column)):
        if column is not None and column not in dataset.column_names:
            raise ValueError(
                f"The {role} column {column!r} is not in the dataset, whose columns are {dataset.column_names}. "
                f"Name it with --{role}-column."
            )
    if len(dataset) == 0:
        raise ValueError(
            f"{source if isinstance(source, (str, Path)) else type(source).__name__} (split {split!r}) has no "
            "rows: check the source, or pick another split with --split."
        )
    # Folders of recordings (and many datasets) name these columns plainly: use them unless told otherwise.
    id_column = id_column or ("id" if "id" in dataset.column_names else None)
    speaker_column = speaker_column or next(
        (name for name in ("speaker", "speaker_id") if name in dataset.column_names), None
    )
    if isinstance(dataset.features.get(audio_column), datasets.Audio):
        # Read the stored bytes ourselves (soundfile): datasets' own decoding needs torchcodec and FFmpeg.
        dataset = dataset.cast_column(audio_column, datasets.Audio(decode=False))
    keep = [c for c in (audio_column, text_column, speaker_column, id_column) if c]
    dataset = dataset.select_columns(list(dict.fromkeys(keep)))

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if codec_batch_size is None:
        codec_batch_size = 1 if torch.device(device).type == "cpu" else 16
    if device != "cpu" and num_proc and num_proc > 1:
        logger.warning("num_proc=%d ignored: the codec runs on %s in the main process.", num_proc, device)
        num_proc = None
    if device != "cpu":
        processor.codec.to(device)

    settings = {
        "source": _describe_source(source, split, config_name),
        "rows": len(dataset),
        "audio_column": audio_column,
        "text_column": text_column,
        "speaker_column": speaker_column,
        "id_column": id_column,
        "language": language,
        "min_seconds": min_seconds,
        "max_seconds": max_seconds,
        "shard_size": shard_size,
        "codec": f"{processor.codec_name_or_path} @ {processor.codec_bandwidth} kbps",
        "vocab": hashlib.sha256(json.dumps(processor.tokenizer.get_vocab(), sort_keys=True).encode()).hexdigest()[:16],
    }
    manifest = _open_manifest(output_dir, settings, overwrite)
    num_shards = -(-len(dataset) // shard_size)
    report = PreparationReport(output_dir=str(output_dir), num_shards=num_shards)
    if manifest.get("complete"):
        _fill_report(report, manifest)
        logger.info("Already prepared: %s", report.summary())
        return report

    workers = num_proc if num_proc and num_proc > 1 else 1
    preparer = _BatchPreparer(processor, {**settings, "codec_batch_size": codec_batch_size}, device,
                              threads=max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None)
    new_shards = 0
    bar = tqdm(total=num_shards, desc="Preparing shards", unit="shard", disable=not progress,
               initial=len(manifest["shards"]))
    for shard in range(num_shards):
        if str(shard) in manifest["shards"]:
            continue
        if max_shards is not None and new_shards >= max_shards:
            break
        start, stop = shard * shard_size, min(len(dataset), (shard + 1) * shard_size)
        part = dataset.select(range(start, stop))
        preparer.offset = start
        mapped = part.map(
            preparer,
            with_indices=True,
            batched=True,
            batch_size=batch_size,
            num_proc=num_proc if num_proc and num_proc > 1 and len(part) > 1 else None,
            remove_columns=[c for c in part.column_names if c not in (speaker_column, text_column)],
            load_from_cache_file=False,
            new_fingerprint=f"valle-prepare-{settings['vocab']}-{shard}-{len(manifest['shards'])}",
            desc=f"Shard {shard + 1}/{num_shards}",
        )
        # `map` numbers rows from 0 within the shard: turn them into the source's row numbers.
        statuses, local = mapped["_status"], mapped["_index"]
        stats = {"rows": len(part), "kept": 0, "too_short": 0, "too_long": 0, "bad": 0, "seconds": 0.0}
        bad_rows, seconds = [], mapped["seconds"]
        for row, status in enumerate(statuses):
            if not status:
                stats["kept"] += 1
                stats["seconds"] += seconds[row]
            elif status in ("too_short", "too_long"):
                stats[status] += 1
            else:
                stats["bad"] += 1
                bad_rows.append({"row": start + local[row], "id": mapped[row]["id"], "reason": status[len("bad: "):]})
        kept = mapped.filter(lambda status: not status, input_columns="_status").remove_columns(["_status", "_index"])
        if text_column != "text":
            kept = kept.rename_column(text_column, "text")
        if speaker_column and speaker_column != "speaker":
            kept = kept.rename_column(speaker_column, "speaker")
        final = output_dir / SHARDS / f"{shard:05d}"
        temporary = output_dir / SHARDS / f"{shard:05d}.partial"
        shutil.rmtree(temporary, ignore_errors=True)
        kept.save_to_disk(str(temporary))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(temporary, final)
        # Bad rows first, then the manifest: a crash in between re-does the shard (replacing its lines), never
        # loses its report.
        _replace_bad_rows(output_dir / BAD_ROWS, shard, bad_rows)
        if bad_rows:
            with open(output_dir / BAD_ROWS, "a", encoding="utf-8") as handle:
                for entry in bad_rows:
                    handle.write(json.dumps({"shard": shard, **entry}, ensure_ascii=False) + "\n")
        manifest["shards"][str(shard)] = stats
        _write_json(output_dir / MANIFEST, manifest)
        new_shards += 1
        bar.update(1)
        for entry in bad_rows:
            logger.warning("Skipped row %s (id %s): %s", entry["row"], entry["id"], entry["reason"])
    bar.close()

    if len(manifest["shards"]) == num_shards:
        _merge_shards(output_dir, num_shards)
        manifest["complete"] = True
        _write_json(output_dir / MANIFEST, manifest)
    _fill_report(report, manifest)
    return report


def _describe_source(source, split, config_name) -> str:
    if isinstance(source, (str, Path)):
        return f"{Path(source).resolve() if Path(source).exists() else source} [{config_name or '-'}:{split}]"
    fingerprint = getattr(source, "_fingerprint", None)
    return f"{type(source).__name__}:{fingerprint}:{split}"


def _open_manifest(output_dir: Path, settings: dict, overwrite: bool) -> dict:
    path = output_dir / MANIFEST
    if overwrite and output_dir.exists():
        for name in (MANIFEST, BAD_ROWS, SHARDS):
            target = output_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        for stale in ("state.json", "dataset_info.json"):
            (output_dir / stale).unlink(missing_ok=True)
        for arrow in output_dir.glob("data-*.arrow"):
            arrow.unlink()
    if path.exists():
        manifest = json.loads(path.read_text(encoding="utf-8"))
        changed = {k: (manifest["settings"].get(k), v) for k, v in settings.items() if manifest["settings"].get(k) != v}
        if changed:
            listing = "; ".join(f"{k}: was {old!r}, now {new!r}" for k, (old, new) in changed.items())
            raise ValueError(
                f"{output_dir} holds a preparation made with other settings ({listing}). Run again with the same "
                "settings to continue it, choose another output folder, or pass --overwrite to start again."
            )
        return manifest
    if output_dir.exists() and any(output_dir.iterdir()):
        raise ValueError(
            f"{output_dir} is not empty and holds no preparation manifest; choose an empty or new folder (or pass "
            "--overwrite to clear a previous preparation)."
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"version": 1, "settings": settings, "shards": {}, "complete": False}
    _write_json(path, manifest)
    return manifest


def _merge_shards(output_dir: Path, num_shards: int) -> None:
    import datasets

    parts = [datasets.load_from_disk(str(output_dir / SHARDS / f"{i:05d}")) for i in range(num_shards)]
    parts = [p for p in parts if len(p)] or parts[:1]
    merged = datasets.concatenate_datasets(parts)
    temporary = output_dir.parent / (output_dir.name + ".merging")
    shutil.rmtree(temporary, ignore_errors=True)
    merged.save_to_disk(str(temporary))
    del merged, parts
    for stale in output_dir.glob("data-*.arrow"):
        stale.unlink()
    for item in temporary.iterdir():
        os.replace(item, output_dir / item.name)
    temporary.rmdir()
    shutil.rmtree(output_dir / SHARDS, ignore_errors=True)


def _replace_bad_rows(path: Path, shard: int, new_rows: list) -> None:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip() and json.loads(line)["shard"] != shard]
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(lines), encoding="utf-8")
    os.replace(temporary, path)


def _fill_report(report: PreparationReport, manifest: dict) -> None:
    for stats in manifest["shards"].values():
        for key in ("rows", "kept", "too_short", "too_long", "bad"):
            setattr(report, key, getattr(report, key) + stats[key])
        report.seconds += stats["seconds"]
    report.shards_done = len(manifest["shards"])
    report.complete = bool(manifest.get("complete"))
    bad_path = Path(report.output_dir) / BAD_ROWS
    if bad_path.exists():
        with open(bad_path, encoding="utf-8") as handle:
            report.bad_examples = [json.loads(line) for _, line in zip(range(20), handle)]


def _write_json(path: Path, value: Any) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, path)


def joining_ids(tokenizer) -> dict:
    """The ids `join_phoneme_ids` needs from a `VallETokenizer`: its word separator and begin / end tokens."""
    separator = tokenizer.word_separator
    return {"separator_id": tokenizer.convert_tokens_to_ids(separator) if separator is not None else None,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}


def join_phoneme_ids(first, second, *, separator_id: int | None, bos_token_id: int | None = None,
                     eos_token_id: int | None = None) -> list[int]:
    """Two utterances' phoneme ids as one: `first` without its end token, the separator (if any), `second` without
    its begin token (each dropped only where present)."""
    first, second = list(first), list(second)
    if eos_token_id is not None and first and first[-1] == eos_token_id:
        first = first[:-1]
    if bos_token_id is not None and second and second[0] == bos_token_id:
        second = second[1:]
    return first + ([separator_id] if separator_id is not None else []) + second


def join_same_speaker(
    dataset,
    fraction: float,
    *,
    separator_id: int | None,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    max_frames: int | None = None,
    seed: int = 0,
    speaker_column: str = "speaker",
    length_column: str = "num_frames",
):
    """
    Adds joined utterances to prepared data: two utterances of the same speaker, one after the other, as one
    training sequence (phonemes `a + separator + b`, codes `a` then `b`). Returns `dataset` followed by the joined
    rows, about `fraction * len(dataset)` of them.

    Why: the AR learns from single utterances, and VALL-E mode then asks it to go on from a prompt taken from
    ANOTHER utterance into a new sentence, a joint it never saw. The paper's LibriLight segments (10-20 s of read
    books) hold many sentence joints; a corpus of one-sentence utterances (the lab's, many TTS sets) holds none.
    Joined rows put that joint back into plain next-token training, without an explicit prompt.

    Args:
        dataset (`datasets.Dataset`): prepared data (`valle prepare`): `input_ids`, `codes`, `num_frames`, the
            speaker column; `id`, `text` and `seconds` are joined too when present.
        fraction (`float`): joined rows per utterance (> 0; 1.0 doubles the data, half of it joined).
        separator_id (`int` or `None`): the word separator's id (a word boundary between the two), or None.
        bos_token_id, eos_token_id (`int`, *optional*): the ids wrapping each utterance's phonemes, if any; the
            joined row keeps the first utterance's begin and the second's end token only (`join_phoneme_ids`;
            `joining_ids(tokenizer)` gives all three).
        max_frames (`int`, *optional*): longest joined row in codec frames (default: the longest utterance of
            `dataset`, so that no batch gets longer than the data already has).
        seed (`int`): the draw of the pairs (the same seed gives the same rows, so a resumed run sees the same data).
    """
    import datasets

    if not fraction > 0:
        raise ValueError(f"`fraction` must be > 0 (joined rows per utterance), got {fraction}.")
    missing = [column for column in ("input_ids", "codes", length_column, speaker_column)
               if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"join_same_speaker needs the columns {missing} (the data has {dataset.column_names}): prepare it with "
            "`valle prepare --speaker-column ...` so that each utterance knows its speaker."
        )
    frames = np.asarray(dataset[length_column], dtype=np.int64)
    limit = int(frames.max()) if max_frames is None else int(max_frames)
    speakers = dataset[speaker_column]
    rows_by_speaker: dict[Any, list[int]] = {}
    for row, speaker in enumerate(speakers):
        rows_by_speaker.setdefault(speaker, []).append(row)
    rows_by_speaker = {speaker: np.asarray(rows) for speaker, rows in rows_by_speaker.items()}
    rng = np.random.default_rng([seed, 0x4A4F494E])  # "JOIN": its own stream, apart from other draws on `seed`
    count = int(round(fraction * len(dataset)))
    drawn = rng.permutation(len(dataset))[:count] if count <= len(dataset) else rng.integers(len(dataset), size=count)
    firsts, kept = [], []
    for second in drawn:
        rows = rows_by_speaker[speakers[second]]
        fits = rows[(rows != second) & (frames[rows] + frames[second] <= limit)]
        if fits.size:
            firsts.append(int(fits[rng.integers(fits.size)]))
            kept.append(int(second))
    if not kept:
        raise ValueError(
            f"join_same_speaker: no two utterances of one speaker fit in {limit} frames together. Each speaker needs "
            "at least two utterances; raise `max_frames` if they are long."
        )
    if len(kept) < count:
        logger.info("join_same_speaker: %d of %d drawn utterances had no partner within %d frames.",
                    count - len(kept), count, limit)
    head = dataset.select(firsts)
    columns = set(dataset.column_names)

    ids = {"separator_id": separator_id, "bos_token_id": bos_token_id, "eos_token_id": eos_token_id}

    def join(batch, indices):
        before = head[indices[0] : indices[-1] + 1]
        out = {
            "input_ids": [join_phoneme_ids(a, b, **ids) for a, b in zip(before["input_ids"], batch["input_ids"])],
            "codes": [list(a) + list(b) for a, b in zip(before["codes"], batch["codes"])],
            length_column: [int(a) + int(b) for a, b in zip(before[length_column], batch[length_column])],
        }
        if "id" in columns:
            out["id"] = [f"{a}+{b}" for a, b in zip(before["id"], batch["id"])]
        if "text" in columns:
            out["text"] = [f"{a} {b}" for a, b in zip(before["text"], batch["text"])]
        if "seconds" in columns:
            out["seconds"] = [float(a) + float(b) for a, b in zip(before["seconds"], batch["seconds"])]
        return out

    joined = dataset.select(kept).map(join, with_indices=True, batched=True, batch_size=256, features=dataset.features,
                                      desc="joining utterances of the same speaker")
    return datasets.concatenate_datasets([dataset, joined])


__all__ = [
    "PreparationReport", "audio_folder_dataset", "join_phoneme_ids", "join_same_speaker", "joining_ids", "load_source",
    "prepare_dataset",
]
