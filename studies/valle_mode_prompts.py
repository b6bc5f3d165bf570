"""Why does VALL-E mode read worse than VALL-E-continual? VALL-E mode with other prompts, on the lab's test cases.

    python studies/valle_mode_prompts.py --model valle/assets/lab-valle --lab-dir runs/lab24 --seeds 0,1 \
        --out lab_artifacts/valle_mode_prompts.json

Each test case of `valle evaluate --lab` (same selection, same target sentence) is synthesised with:
- `crop_recognized`: the protocol's prompt, a random 3 s crop of another utterance of the same speaker, its
  transcript from the lab recogniser (the `valle` row of `valle evaluate`, same seeds, same numbers);
- `start_recognized`: the first 3 s of that utterance (a prompt that starts where an utterance starts, as in
  training), transcript from the recogniser;
- `whole_reference`: another utterance of the same speaker, whole (the one closest to 3 s), with its true text:
  no mid-word cut, no recognition error;
- `whole_recognized`: the same utterance with the recogniser's transcript;
- `seen_speaker`: a whole utterance (closest to 3 s) of a TRAINING speaker, with its true text (one speaker per
  test case, in turn): a voice the model knows.
If the crop or its transcript were the problem, the `whole_reference` row would read much better; if cloning
unseen voices were, the `seen_speaker` row would. The output is a
JSON with every synthesis and a markdown table (CER of the lab recogniser, in %).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from valle.commands.synthesize import add_sampling_flags, sampling_kwargs  # noqa: E402  (after the path)

VARIANTS = ("crop_recognized", "start_recognized", "whole_reference", "whole_recognized", "seen_speaker")


def prompt_for(variant: str, case, others, recognizer, rate: int):
    """(prompt audio, prompt transcript) of one variant for one test case (`case`: `valle.evaluation._Case`);
    `others`: the utterances a whole-utterance prompt is chosen from."""
    if variant == "crop_recognized":
        return case.prompt(), case.prompt_transcript()
    if variant == "start_recognized":
        audio = case.case.prompt.load(rate)[: case.prompt_samples]
        return audio, recognizer.transcribe([audio], rate)[0].strip()
    closest = min(others, key=lambda other: abs(other.seconds - case.prompt_samples / rate))
    audio = closest.load(rate)
    if variant in ("whole_reference", "seen_speaker"):
        return audio, closest.text
    return audio, recognizer.transcribe([audio], rate)[0].strip()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="valle/assets/lab-valle")
    parser.add_argument("--lab-dir", default="runs/lab")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--limit", type=int, default=16, help="test cases (as `valle evaluate --limit`)")
    parser.add_argument("--out", required=True, help="JSON file for every synthesis and the summary")
    group = parser.add_argument_group("AR sampling (default: the model's generation config)")
    add_sampling_flags(group)
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")

    import torch

    from valle.evaluation import (
        _Case, _generation_seed, corpus_error_rate, effective_sampling, error_counts, lab_recognizer_dir, lab_setup,
        load_utterances, select_test_cases,
    )
    from valle.synthesis import load_model_and_processor

    corpus, recognizer, speaker_judge = lab_setup(args.lab_dir)
    utterances = load_utterances(corpus, split="test")
    seen = {}
    if "seen_speaker" in variants:
        for utterance in load_utterances(corpus, split="train"):
            seen.setdefault(utterance.speaker_id, []).append(utterance)
        seen_speakers = sorted(seen)
    cases, _ = select_test_cases(utterances, limit=args.limit)
    model, processor = load_model_and_processor(args.model)
    sampling = sampling_kwargs(args)
    rate = processor.sampling_rate
    records = []
    for number, test_case in enumerate(cases, 1):
        case = _Case(test_case, processor, speaker_judge, 3.0, recognizer)
        target = test_case.utterance
        others = [u for u in utterances if u.speaker_id == target.speaker_id and u.id != target.id]
        for variant in variants:
            pool = seen[seen_speakers[(number * 7) % len(seen_speakers)]] if variant == "seen_speaker" else others
            audio, transcript = prompt_for(variant, case, pool, recognizer, rate)
            inputs = processor(text=target.text, prompt_audio=audio, prompt_text=transcript or None,
                               sampling_rate=rate)
            for seed in (int(s) for s in args.seeds.split(",")):
                # The protocol's prompt uses the seeds of `valle evaluate`'s `valle` row.
                system = "valle" if variant == "crop_recognized" else variant
                torch.manual_seed(_generation_seed(seed, target.id, system))
                with torch.no_grad():
                    output = model.generate(**inputs, return_dict_in_generate=True, **sampling)
                codes = output.sequences[0, : int(output.sequence_lengths[0])]
                waveform = processor.batch_decode([codes])[0]
                heard = recognizer.transcribe([waveform], rate)[0] if len(waveform) >= 0.3 * rate else ""
                counts = error_counts(target.text, heard)
                records.append({"variant": variant, "seed": seed, "utterance_id": target.id,
                                "prompt_seconds": round(len(audio) / rate, 2), "prompt_text": transcript,
                                "reference": target.text, "hypothesis": heard, **counts})
        print(f"{number}/{len(cases)} {target.id}", file=sys.stderr, flush=True)
    summary = {}
    for variant in variants:
        rows = [r for r in records if r["variant"] == variant]
        summary[variant] = {
            "cer": round(corpus_error_rate(rows, "char"), 1),
            "wer": round(corpus_error_rate(rows, "word"), 1),
            "mean_prompt_seconds": round(sum(r["prompt_seconds"] for r in rows) / len(rows), 2),
            "syntheses": len(rows),
        }
    with open(args.out, "w", encoding="utf-8") as handle:
        # Which recogniser scored: the lab folder's own, or the committed lab_artifacts/judge (a path in the repo).
        scorer = os.path.relpath(lab_recognizer_dir(args.lab_dir), ROOT)
        json.dump({"model": args.model, "lab_dir": args.lab_dir, "recognizer": scorer, "test_cases": len(cases),
                   "seeds": args.seeds, "sampling": effective_sampling(model, sampling), "summary": summary,
                   "records": records}, handle, indent=1)
    print("| VALL-E-mode prompt | WER | CER | prompt (s) |\n|---|---|---|---|")
    for variant, row in summary.items():
        print(f"| {variant} | {row['wer']} | {row['cer']} | {row['mean_prompt_seconds']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
