"""`valle evaluate`: the paper's evaluation protocol (WER and speaker similarity, Table 2), full scale or in the lab."""

from __future__ import annotations

import sys

from valle.commands.synthesize import add_sampling_flags, sampling_kwargs

NAME = "evaluate"
HELP = "Score a VALL-E model with the paper's protocol (WER, speaker similarity; Table 2), resumable."


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="the VALL-E to evaluate: a save_pretrained folder or Hub id")
    parser.add_argument("--out", default="runs/evaluate",
                        help="output folder: results.jsonl (resumable), summary.json, table.md "
                             "(default: runs/evaluate)")
    parser.add_argument("--lab", action="store_true",
                        help="offline lab: the lab corpus's held-out test speakers and the lab judges (see --lab-dir)")
    parser.add_argument("--lab-dir", default="runs/lab", help="the lab folder of `valle lab` (default: runs/lab)")
    group = parser.add_argument_group("test data (full scale)")
    group.add_argument("--dataset", default="openslr/librispeech_asr",
                       help="a 🤗 datasets Hub name, a save_to_disk folder, or a LibriSpeech folder "
                            "(e.g. LibriSpeech/test-clean); default: openslr/librispeech_asr")
    group.add_argument("--dataset-config", default="clean", help="Hub dataset config (default: clean)")
    group.add_argument("--split", default="test",
                       help="split (default: test); with --lab, `validation` holds other held-out speakers, for "
                            "choosing settings without looking at the test speakers")
    group.add_argument("--audio-column", default="audio")
    group.add_argument("--text-column", default="text")
    group.add_argument("--speaker-column", default="speaker_id")
    group.add_argument("--id-column", default="id", help="unique utterance ids (row numbers when absent)")
    group = parser.add_argument_group("judges (full scale)")
    group.add_argument("--asr-model", default="facebook/hubert-large-ls960-ft",
                       help="CTC recogniser for WER, name or folder (default: facebook/hubert-large-ls960-ft)")
    group.add_argument("--speaker-model", default="microsoft/wavlm-base-plus-sv",
                       help="x-vector speaker model for SPK, name or folder (default: microsoft/wavlm-base-plus-sv)")
    group = parser.add_argument_group("protocol")
    group.add_argument("--seeds", type=int, default=3, help="runs of the sampled systems, averaged (default: 3)")
    group.add_argument("--systems", default=None,
                       help="comma-separated rows to compute, from ground_truth, codec_resynthesis, valle, "
                            "valle_continual, and the paper's ablations valle_no_ar_prompt (the AR without the "
                            "acoustic prompt; needs a model with use_audio_bos=True, skipped otherwise) and "
                            "nar_ground_truth_first (the NAR on the recording's own codebook 1), with its "
                            "reference codec_first_codebook (that codebook 1 decoded alone). Default: the first "
                            "four (the paper's Table 2); with --lab, all seven")
    group.add_argument("--min-seconds", type=float, default=4.0, help="shortest test utterance (default: 4)")
    group.add_argument("--max-seconds", type=float, default=10.0, help="longest test utterance (default: 10)")
    group.add_argument("--prompt-seconds", type=float, default=3.0, help="prompt length (default: 3)")
    group.add_argument("--selection-seed", type=int, default=0, help="seed of the prompt draw (default: 0)")
    group.add_argument("--limit", type=int, default=None, help="evaluate only this many test utterances")
    group.add_argument("--save-audio", action="store_true", help="also write every scored output as a WAV")
    group = parser.add_argument_group("sampling (AR decoder; the NAR is always greedy)")
    add_sampling_flags(group)
    group.add_argument("--max-new-seconds", type=float, default=None,
                       help="stop each synthesis after this much generated audio (default: the model's cap)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--by-speaker", action="store_true",
                        help="also print CER (--lab) or WER per speaker and system (always in summary.json)")


def run(args) -> int:
    from valle.evaluation import SYSTEMS, LabNotReady, evaluate, markdown_table, speaker_table

    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {args.seeds}.")
    systems = None  # the default rows of `evaluate`: the paper's Table 2, plus the ablation in the lab
    if args.systems is not None:
        systems = [name.strip() for name in args.systems.split(",") if name.strip()]
        unknown = [name for name in systems if name not in SYSTEMS]
        if unknown or not systems:
            raise ValueError(f"--systems: unknown {unknown or 'empty list'}; choose from {','.join(SYSTEMS)}.")
    try:
        summary = evaluate(
            args.model, args.out, lab=args.lab, lab_dir=args.lab_dir, dataset=args.dataset,
            dataset_config=args.dataset_config or None, split=args.split,
            columns={"audio_column": args.audio_column, "text_column": args.text_column,
                     "speaker_column": args.speaker_column, "id_column": args.id_column},
            asr_model=args.asr_model, speaker_model=args.speaker_model, seeds=list(range(args.seeds)),
            systems=systems, min_seconds=args.min_seconds, max_seconds=args.max_seconds,
            prompt_seconds=args.prompt_seconds, selection_seed=args.selection_seed, limit=args.limit,
            generation_kwargs=sampling_kwargs(args), max_new_seconds=args.max_new_seconds, device=args.device,
            save_audio=args.save_audio,
            progress=not args.no_progress,
        )
    except LabNotReady as error:
        print(f"valle evaluate --lab: {error}", file=sys.stderr)
        return 2
    print(markdown_table(summary))
    if args.by_speaker:
        print("\n" + speaker_table(summary, "cer" if args.lab else "wer"))
    print(f"\nper-utterance results: {args.out}/results.jsonl; summary: {args.out}/summary.json; "
          f"table: {args.out}/table.md")
    return 0
