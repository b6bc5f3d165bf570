"""End-to-end zero-shot synthesis: 10 s of new speech after a 3 s voice prompt, and the naive reference.

Stages timed in one run: codec encoding of the 3 s prompt, the AR (codebook 1, KV cache, `model.generate`'s
own loop), the NAR (7 greedy passes) and codec decoding of the 10 s of codes. The real-time factor is
`wall seconds / 10 s of audio`. The two model stages are timed by wrapping the model's own
`_generate_first_codebook` / `_generate_other_codebooks` while calling the public `model.generate`.

The codec is transformers' `EncodecModel` with the real facebook/encodec_24khz architecture (`EncodecConfig()`
defaults: 24 kHz, 32 filters, LSTM, 6 kbps -> 8 codebooks) and RANDOM weights: the Hub is not reachable from
the benchmark machine, and the codec's time depends on its architecture, not on its weights. The VALL-E model
has random weights too; its time does not depend on them (the number of frames is fixed, EOS is forbidden).

The naive reference is how the popular open implementations synthesise: batch 1, no KV cache (the whole
sequence is recomputed at each AR step), then the same NAR passes and the same codec. At the paper's size its AR
takes tens of minutes on a CPU, so by default its per-step time is measured at `--naive-samples` evenly spaced
steps of the trajectory and integrated with the trapezoid rule (`ar_decoding.time_full_forward`; the cost is
close to linear in the length); `--full-naive` runs every step instead. The speed-up is then
`naive end-to-end / ours end-to-end`, both measured in this run.

    python benchmarks/end_to_end.py --quick
    python benchmarks/end_to_end.py --configs paper --full-naive

Writes `benchmarks/results/end_to_end.json` (or --out).
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import add_common_arguments, build_model, machine, write
from ar_decoding import profile_cached_step, time_full_forward


def real_architecture_codec():
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(0)
    return EncodecModel(EncodecConfig()).eval()


class StageTimer:
    """Wraps a bound method of one model instance and accumulates its wall time."""

    def __init__(self, model, name: str):
        self.seconds = 0.0
        original = getattr(model, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        setattr(model, name, timed)


def encode(codec, waveform: torch.Tensor) -> torch.Tensor:
    """(samples,) -> codes (frames, 8), as `VallEProcessor` does for a transformers EnCodec."""
    return codec.encode(waveform[None, None], bandwidth=6.0).audio_codes[0, 0].transpose(0, 1).long()


def decode(codec, codes: torch.Tensor) -> torch.Tensor:
    return codec.decode(codes.transpose(0, 1)[None, None], [None]).audio_values.reshape(-1)


def synthesise(model, codec, waveform, input_ids, frames: int) -> dict:
    ar, nar = StageTimer(model, "_generate_first_codebook"), StageTimer(model, "_generate_other_codebooks")
    try:
        start = time.perf_counter()
        prompt = encode(codec, waveform)[None]
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        codes = model.generate(input_ids, prompt_codes=prompt, min_new_tokens=frames, max_new_tokens=frames)
        generate_s = time.perf_counter() - start
        start = time.perf_counter()
        audio = decode(codec, codes[0])
        decode_s = time.perf_counter() - start
    finally:  # drop the wrappers
        del model._generate_first_codebook, model._generate_other_codebooks
    assert codes.shape[1] == frames and audio.numel() == frames * 320, (codes.shape, audio.shape)
    return {
        "codec_encode_s": encode_s,
        "ar_s": ar.seconds,
        "nar_s": nar.seconds,
        "generate_other_s": generate_s - ar.seconds - nar.seconds,
        "codec_decode_s": decode_s,
        "total_s": encode_s + generate_s + decode_s,
        "prompt_frames": prompt.shape[1],
        "prompt": prompt,
    }


def naive_ar_seconds(model, input_ids, prompt, frames: int, samples: int, full: bool) -> tuple[float, dict | None]:
    if full:
        options = model._generation_options(
            None, dict(max_new_tokens=frames, min_new_tokens=frames, do_sample=True, use_cache=False)
        )
        start = time.perf_counter()
        model._generate_first_codebook(
            input_ids, torch.ones_like(input_ids, dtype=torch.bool), None, prompt,
            torch.ones(prompt.shape[:2], dtype=torch.bool), options,
        )
        return time.perf_counter() - start, None
    prompt_frames = prompt.shape[1]
    # Step k (0-based) runs the whole AR over the phonemes and prompt_frames + k frames.
    points = [prompt_frames + round(i * (frames - 1) / (samples - 1)) for i in range(samples)]
    measured = {str(p): time_full_forward(model, input_ids, prompt[..., 0], p, repeats=1) for p in points}
    values = list(measured.values())
    mean = sum((a + b) / 2 for a, b in zip(values, values[1:])) / (len(values) - 1)
    return mean * frames, {k: 1000 * v for k, v in measured.items()}


def benchmark(config_name: str, codec, args) -> dict:
    from valle.smoke import voiced_signal

    model = build_model(config_name)
    config = model.config
    frames = int(args.seconds * config.frame_rate)
    waveform = torch.from_numpy(voiced_signal(args.prompt_seconds, sampling_rate=24_000))
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, config.vocab_size, (1, args.phonemes), generator=generator)
    with torch.inference_mode():
        synthesise(model, codec, waveform, input_ids, 8)  # warm-up
        ours = synthesise(model, codec, waveform, input_ids, frames)
        prompt = ours.pop("prompt")
        naive_ar, samples = naive_ar_seconds(model, input_ids, prompt, frames, args.naive_samples, args.full_naive)
        profile = profile_cached_step(model, input_ids, prompt)  # one cached AR step after this prompt
    naive_total = ours["codec_encode_s"] + naive_ar + ours["nar_s"] + ours["codec_decode_s"]
    audio_seconds = frames / config.frame_rate
    run = {
        "config": config_name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "phonemes": args.phonemes,
        "audio_seconds": audio_seconds,
        "ours": {**ours, "rtf": ours["total_s"] / audio_seconds},
        "share_of_time": {
            stage: ours[key] / ours["total_s"]
            for stage, key in (("ar", "ar_s"), ("nar", "nar_s"), ("codec", "codec_encode_s"), ("codec_decode", "codec_decode_s"))
        },
        "naive": {
            "ar_s": naive_ar,
            "ar_method": "full run" if samples is None else f"trapezoid over {len(samples)} sampled steps (x{frames} steps)",
            "ar_samples_ms_per_step": samples,
            "nar_codec_s": "same as ours (the open implementations also run 7 NAR passes and the codec)",
            "total_s": naive_total,
            "rtf": naive_total / audio_seconds,
        },
        "speedup_end_to_end": naive_total / ours["total_s"],
        "speedup_ar": naive_ar / ours["ar_s"],
        "target": {"speedup_end_to_end_at_least": 20.0},
        "profile_ar_step_top_ops": profile,
    }
    run["share_of_time"]["codec"] += run["share_of_time"].pop("codec_decode")
    print(
        f"[{config_name}] ours {ours['total_s']:.1f} s (RTF {run['ours']['rtf']:.2f}: AR {ours['ar_s']:.1f}, "
        f"NAR {ours['nar_s']:.1f}, codec {ours['codec_encode_s'] + ours['codec_decode_s']:.1f}) | naive "
        f"{naive_total:.1f} s (AR {naive_ar:.1f}) -> {run['speedup_end_to_end']:.1f}x end to end, "
        f"{run['speedup_ar']:.1f}x AR",
        flush=True,
    )
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of speech to generate (75 frames/s)")
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--phonemes", type=int, default=150, help="prompt transcript + target phonemes")
    parser.add_argument("--naive-samples", type=int, default=None, help="sampled naive steps (default 5, quick 3)")
    parser.add_argument("--full-naive", action="store_true", help="run every naive AR step (tens of minutes)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.naive_samples = args.naive_samples or (3 if args.quick else 5)
    codec = real_architecture_codec()
    results = {
        "benchmark": "end_to_end_10s_after_3s_prompt",
        "quick": args.quick,
        "machine": machine(),
        "codec": "transformers EncodecModel(EncodecConfig()): the facebook/encodec_24khz architecture with RANDOM "
        "weights (the Hub is unreachable here; codec time depends on the architecture, not the weights)",
        "model_weights": "random (time does not depend on them: frames fixed, EOS forbidden)",
        "runs": [],
    }
    for name in args.configs:
        results["runs"].append(benchmark(name, codec, args))
    return write(results, "end_to_end", args.out)


if __name__ == "__main__":
    main()
