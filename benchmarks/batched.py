"""Batched generation: seconds of audio generated per wall second at batch 1, 4, 16 and 64.

Every item generates exactly the same number of frames (`min_new_tokens = max_new_tokens`, EOS forbidden until
then), so the batches do the same work per item and are comparable. Timed: `model.generate` (AR + 7 NAR
passes; codec excluded: it is per item and the same at any batch size). The AR and NAR parts are timed
separately (wrapping the model's own stage methods) because they scale very differently with the batch: a
batch-1 AR step reads every weight for one frame (memory-bound), so batching it is nearly free until it becomes
compute-bound; the NAR is already one large matrix-multiply workload per item (compute-bound) at batch 1.

    python benchmarks/batched.py --quick        # 1 s after a 1 s prompt; paper size at batch 1/4/16 only
    python benchmarks/batched.py                # 10 s after a 3 s prompt, batch 1/4/16/64 (very long on CPU)

Writes `benchmarks/results/batched.json` (or --out).
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import add_common_arguments, build_model, machine, write
from ar_decoding import profile_cached_step
from end_to_end import StageTimer


def batch_inputs(config, batch: int, phonemes: int, prompt_frames: int):
    generator = torch.Generator().manual_seed(batch)
    input_ids = torch.randint(3, config.vocab_size, (batch, phonemes), generator=generator)
    prompt = torch.randint(0, config.codebook_size, (batch, prompt_frames, config.num_codebooks), generator=generator)
    return input_ids, prompt


def nar_batched_vs_items(model, batch: int, phonemes: int, prompt_frames: int, frames: int) -> dict:
    """The NAR's 7 passes for `batch` items at once vs one item at a time (same inputs, same outputs checked)."""
    import time

    input_ids, prompt = batch_inputs(model.config, batch, phonemes, prompt_frames)
    first = torch.randint(0, model.config.codebook_size, (batch, frames), generator=torch.Generator().manual_seed(3))
    lengths = torch.full((batch,), frames)
    phoneme_mask = torch.ones_like(input_ids, dtype=torch.bool)
    prompt_mask = torch.ones(prompt.shape[:2], dtype=torch.bool)

    def nar(rows):
        return model._generate_other_codebooks(
            input_ids[rows], phoneme_mask[rows], None, prompt[rows], prompt_mask[rows], first[rows], lengths[rows]
        )

    start = time.perf_counter()
    together = nar(slice(None))
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    alone = torch.cat([nar(slice(i, i + 1)) for i in range(batch)])
    items_s = time.perf_counter() - start
    return {
        "batch": batch,
        "frames": frames,
        "batched_s": batched_s,
        "item_by_item_s": items_s,
        "item_by_item_over_batched": items_s / batched_s,
        "same_codes_fraction": float((together == alone).float().mean()),
    }


def run_batch(model, batch: int, phonemes: int, prompt_frames: int, frames: int) -> dict:
    config = model.config
    input_ids, prompt = batch_inputs(config, batch, phonemes, prompt_frames)
    ar, nar = StageTimer(model, "_generate_first_codebook"), StageTimer(model, "_generate_other_codebooks")
    try:
        start = time.perf_counter()
        codes = model.generate(input_ids, prompt_codes=prompt, min_new_tokens=frames, max_new_tokens=frames)
        wall = time.perf_counter() - start
    finally:
        del model._generate_first_codebook, model._generate_other_codebooks
    assert codes.shape[:2] == (batch, frames) and bool((codes >= 0).all())
    audio = batch * frames / config.frame_rate
    return {
        "batch": batch,
        "wall_s": wall,
        "ar_s": ar.seconds,
        "nar_s": nar.seconds,
        "audio_seconds": audio,
        "audio_s_per_wall_s": audio / wall,
        "ar_only_audio_s_per_s": audio / ar.seconds,
        "nar_only_audio_s_per_s": audio / nar.seconds,
        "ar_ms_per_step": 1000 * ar.seconds / frames,
    }


def benchmark(config_name: str, args) -> dict:
    model = build_model(config_name)
    frame_rate = model.config.frame_rate
    frames, prompt_frames = int(args.seconds * frame_rate), int(args.prompt_seconds * frame_rate)
    batches = list(args.batches)
    skipped = None
    if args.quick and config_name == "paper":
        skipped = [b for b in batches if b > 16]
        batches = [b for b in batches if b <= 16]
    with torch.inference_mode():
        run_batch(model, 1, args.phonemes, prompt_frames, 4)  # warm-up
        rows = []
        for batch in batches:
            row = run_batch(model, batch, args.phonemes, prompt_frames, frames)
            rows.append(row)
            print(
                f"[{config_name}] batch {batch:3d}: {row['audio_s_per_wall_s']:.2f} audio s/s (AR {row['ar_s']:.1f} s, "
                f"{row['ar_ms_per_step']:.1f} ms/step; NAR {row['nar_s']:.1f} s)",
                flush=True,
            )
        # Where a batch-1 and a batch-16 AR step spend their time (top operators by self CPU time).
        profiles = {
            f"batch_{batch}": profile_cached_step(model, *batch_inputs(model.config, batch, args.phonemes, prompt_frames))
            for batch in (1, 16)
        }
        nar_comparison = None
        if args.compare_nar:
            nar_batch = max([b for b in batches if b <= 16] or batches[:1])
            nar_comparison = nar_batched_vs_items(model, nar_batch, args.phonemes, prompt_frames, frames)
    base = rows[0]
    for row in rows:
        row["throughput_vs_batch1"] = row["audio_s_per_wall_s"] / base["audio_s_per_wall_s"]
        row["ar_throughput_vs_batch1"] = row["ar_only_audio_s_per_s"] / base["ar_only_audio_s_per_s"]
        row["nar_throughput_vs_batch1"] = row["nar_only_audio_s_per_s"] / base["nar_only_audio_s_per_s"]
    result = {
        "config": config_name,
        "frames_per_item": frames,
        "prompt_frames": prompt_frames,
        "phonemes": args.phonemes,
        "rows": rows,
        "target": {"batch16_throughput_vs_batch1_at_least": 8.0},
        "profile_ar_step_top_ops": profiles,
    }
    if nar_comparison is not None:
        result["nar_batched_vs_item_by_item"] = nar_comparison
    if skipped:
        result["skipped_batches"] = {"batches": skipped, "why": "--quick: paper size at batch 64 takes tens of minutes on this CPU"}
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--seconds", type=float, default=None, help="seconds generated per item (default 10, quick 1)")
    parser.add_argument("--prompt-seconds", type=float, default=None, help="default 3, quick 1")
    parser.add_argument("--phonemes", type=int, default=None, help="default 150, quick 30")
    parser.add_argument("--no-compare-nar", dest="compare_nar", action="store_false",
                        help="skip timing the NAR item by item against the batched NAR (largest batch <= 16)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.seconds = args.seconds or (1.0 if args.quick else 10.0)
    args.prompt_seconds = args.prompt_seconds or (1.0 if args.quick else 3.0)
    args.phonemes = args.phonemes or (30 if args.quick else 150)
    results = {"benchmark": "batched_generation_throughput", "quick": args.quick, "machine": machine(), "runs": []}
    for name in args.configs:
        results["runs"].append(benchmark(name, args))
    return write(results, "batched", args.out)


if __name__ == "__main__":
    main()
