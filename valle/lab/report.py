"""The lab report: are the judges trustworthy, and does the codec keep voices intelligible?

On held-out (test) speakers, whose voice variants never occur in training:

1. Judge validation on ground-truth audio
   - speaker similarity of two different utterances of the same speaker vs. utterances of
     two different speakers (means and the AUC of telling them apart);
   - CER / WER of the recogniser on clean test speech;
   - both judges on deliberately bad audio (the same utterances buried in white noise at
     0 dB SNR), which they must score clearly worse.
2. Codec round trip with codebook 1 alone (0.75 kbps: the residual codebooks left out) and at
   1.5, 3 and 6 kbps, the way VallEProcessor uses a codec (encode, decode with no scale; a
   `normalize=True` lab codec is exported first): similarity (original, resynthesis), CER / WER
   of the resynthesis, and log-mel distance to the original (multi-resolution log-mel L1, after
   matching the resynthesis's RMS to the original's, since the codec speaks at a fixed level).

Writes `report.json` and wav files (original / resynthesis pairs) to the output folder.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np


def _auc(positives: list[float], negatives: list[float]) -> float:
    """P(a random same-speaker score > a random different-speaker score), ties count half."""
    pos = np.asarray(positives)[:, None]
    neg = np.asarray(negatives)[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def pick_test_utterances(dataset, per_speaker: int, min_seconds: float = 1.5, max_seconds: float = 10.0):
    """The first `per_speaker` utterances of each speaker within the duration range (deterministic)."""
    chosen: dict[str, list[int]] = {}
    for index, (speaker, duration) in enumerate(zip(dataset["speaker_id"], dataset["duration"])):
        if min_seconds <= duration <= max_seconds and len(chosen.setdefault(speaker, [])) < per_speaker:
            chosen[speaker].append(index)
    return chosen


def build_report(
    corpus_path: str,
    codec_dir: str,
    judge_dir: str,
    output_dir: str,
    split: str = "test",
    per_speaker: int = 3,
    wav_examples: int = 6,
    seed: int = 0,
    max_speakers: int | None = None,
    log=print,
) -> dict:
    import soundfile
    import torch
    from transformers import EncodecModel

    from .codec import MultiResolutionMelLoss, export_for_processor
    from .corpus import SAMPLING_RATE, decode_audio, load_corpus
    from .judges import IntelligibilityJudge, SpeakerSimilarityJudge, error_rates

    if per_speaker < 2:
        raise ValueError(f"build_report: per_speaker must be at least 2 (same-speaker pairs), got {per_speaker}.")
    started = time.time()
    dataset = load_corpus(corpus_path)[split]
    chosen = pick_test_utterances(dataset, per_speaker)
    speakers = sorted(s for s, rows in chosen.items() if len(rows) >= 2)[:max_speakers]
    if len(speakers) < 2:
        raise ValueError(f"build_report: the {split} split has fewer than 2 speakers with 2 usable utterances.")
    indices = [i for s in speakers for i in chosen[s]]
    originals, texts, owners = [], [], []
    for i in indices:
        example = dataset[i]
        waveform, sampling_rate = decode_audio(example["audio"])
        if sampling_rate != SAMPLING_RATE:
            raise ValueError(f"build_report: {example['id']} is at {sampling_rate} Hz; the lab is at {SAMPLING_RATE}.")
        originals.append(waveform)
        texts.append(example["text"])
        owners.append(example["speaker_id"])
    log(f"{len(originals)} utterances from {len(speakers)} held-out speakers")

    rng = np.random.default_rng(seed)
    noisy = [w + rng.normal(0, np.sqrt(np.mean(w**2)), len(w)).astype(np.float32) for w in originals]

    speaker_judge = SpeakerSimilarityJudge()
    intelligibility = IntelligibilityJudge(judge_dir)
    codec = EncodecModel.from_pretrained(codec_dir).eval()
    if codec.config.normalize:
        # Measure what VallEProcessor does: encode, then decode with no scale.
        codec = export_for_processor(codec)
    mel = MultiResolutionMelLoss(sampling_rate=SAMPLING_RATE)

    embeddings = [speaker_judge.embed(w, SAMPLING_RATE) for w in originals]
    same, different = [], []
    for a in range(len(originals)):
        for b in range(a + 1, len(originals)):
            score = speaker_judge.cosine(embeddings[a], embeddings[b])
            (same if owners[a] == owners[b] else different).append(score)
    ground_truth_asr = intelligibility.score(originals, SAMPLING_RATE, texts)
    noisy_asr = intelligibility.score(noisy, SAMPLING_RATE, texts)
    noisy_similarity = [speaker_judge.cosine(e, speaker_judge.embed(n, SAMPLING_RATE)) for e, n in zip(embeddings, noisy)]

    def other_speaker_mean(row: int, candidate: np.ndarray) -> float:
        return float(np.mean([speaker_judge.cosine(candidate, embeddings[j]) for j in range(len(owners)) if owners[j] != owners[row]]))

    report: dict = {
        "split": split,
        "speakers": len(speakers),
        "utterances": len(originals),
        "audio_seconds": round(float(sum(len(w) for w in originals)) / SAMPLING_RATE, 1),
        "judges_on_ground_truth": {
            "speaker_similarity_same_speaker": round(float(np.mean(same)), 4),
            "speaker_similarity_different_speakers": round(float(np.mean(different)), 4),
            "speaker_similarity_auc": round(_auc(same, different), 4),
            "pairs": {"same": len(same), "different": len(different)},
            "cer": round(ground_truth_asr["cer"], 4),
            "wer": round(ground_truth_asr["wer"], 4),
        },
        "judges_on_bad_audio_white_noise_0db": {
            "similarity_to_clean_original": round(float(np.mean(noisy_similarity)), 4),
            "cer": round(noisy_asr["cer"], 4),
            "wer": round(noisy_asr["wer"], 4),
        },
        "codec_round_trip": {},
    }
    os.makedirs(output_dir, exist_ok=True)
    wav_dir = os.path.join(output_dir, "wavs")
    os.makedirs(wav_dir, exist_ok=True)
    # Codebook 1 alone (0.75 kbps for 1024 codes at 75 Hz, a rate EnCodec does not offer): the residual codebooks
    # left out, which is what VALL-E's audio would be if its NAR added nothing; then every bandwidth the codec has.
    lowest = min(codec.config.target_bandwidths)
    settings = [(f"{lowest / codec.quantizer.get_num_quantizers_for_bandwidth(lowest):g}kbps", lowest, 1)]
    settings += [(f"{bandwidth:g}kbps", bandwidth, None) for bandwidth in codec.config.target_bandwidths]
    for name, bandwidth, keep in settings:
        resynthesised, distances, similarities, to_others = [], [], [], []
        for row, waveform in enumerate(originals):
            tensor = torch.from_numpy(waveform)[None, None]
            with torch.no_grad():
                codes = codec.encode(tensor, bandwidth=bandwidth).audio_codes[:, :, :keep]
                decoded = codec.decode(codes, [None]).audio_values[..., : tensor.shape[-1]]
            # The codec speaks at a fixed level; match the original's before the (level-sensitive) mel distance.
            decoded = decoded * (tensor.pow(2).mean().sqrt() / decoded.pow(2).mean().sqrt().clamp(min=1e-8))
            distances.append(float(mel(decoded, tensor)))
            output = decoded[0, 0].numpy().astype(np.float32)
            resynthesised.append(output)
            embedding = speaker_judge.embed(output, SAMPLING_RATE)
            similarities.append(speaker_judge.cosine(embedding, embeddings[row]))
            to_others.append(other_speaker_mean(row, embedding))
        asr = intelligibility.score(resynthesised, SAMPLING_RATE, texts)
        report["codec_round_trip"][name] = {
            "codebooks": keep or codec.quantizer.get_num_quantizers_for_bandwidth(bandwidth),
            "similarity_to_original": round(float(np.mean(similarities)), 4),
            "similarity_to_other_speakers": round(float(np.mean(to_others)), 4),
            "cer": round(asr["cer"], 4),
            "wer": round(asr["wer"], 4),
            "log_mel_distance": round(float(np.mean(distances)), 4),
        }
        log(f"{name}: {report['codec_round_trip'][name]}")
        if keep is None and bandwidth == max(codec.config.target_bandwidths):
            # One utterance per speaker first, so the examples cover several voices.
            firsts = [row for row in range(len(owners)) if owners.index(owners[row]) == row]
            picks = (firsts + [row for row in range(len(owners)) if row not in firsts])[:wav_examples]
            for pick in picks:
                name = f"{pick:03d}_{owners[pick].replace('+', '-')}"
                soundfile.write(os.path.join(wav_dir, f"{name}_original.wav"), originals[pick], SAMPLING_RATE)
                soundfile.write(os.path.join(wav_dir, f"{name}_codec_{bandwidth:g}kbps.wav"),
                                np.clip(resynthesised[pick], -1, 1), SAMPLING_RATE)
    report["examples"] = [
        {"text": texts[i], "speaker_id": owners[i], "recognised_ground_truth": ground_truth_asr["hypotheses"][i]}
        for i in range(min(wav_examples, len(texts)))
    ]
    report["seconds_to_build"] = round(time.time() - started, 1)
    with open(os.path.join(output_dir, "report.json"), "w") as handle:
        json.dump(report, handle, indent=1)
    return report


def markdown_table(report: dict) -> str:
    """The README's table, from a report."""
    truth = report["judges_on_ground_truth"]
    noisy = report["judges_on_bad_audio_white_noise_0db"]
    lines = [
        "| audio (held-out speakers) | CER | WER | similarity to original | mel distance |",
        "|---|---|---|---|---|",
        f"| ground truth | {truth['cer']:.3f} | {truth['wer']:.3f} | 1.000 | 0 |",
    ]
    for name, row in report["codec_round_trip"].items():
        lines.append(
            f"| codec resynthesis, {name} ({row['codebooks']} codebooks) | {row['cer']:.3f} | {row['wer']:.3f} | "
            f"{row['similarity_to_original']:.3f} | {row['log_mel_distance']:.3f} |"
        )
    lines.append(f"| bad audio: white noise at 0 dB SNR | {noisy['cer']:.3f} | {noisy['wer']:.3f} | "
                 f"{noisy['similarity_to_clean_original']:.3f} | |")
    lines.append("")
    lines.append(
        f"Speaker similarity between two utterances of the same held-out speaker: "
        f"{truth['speaker_similarity_same_speaker']:.3f}; of different speakers: "
        f"{truth['speaker_similarity_different_speakers']:.3f} (AUC {truth['speaker_similarity_auc']:.3f})."
    )
    return "\n".join(lines)
