"""`valle train --model ... DATA [-- TrainingArguments]`: Trainer on prepared data, on one device or many."""

from __future__ import annotations

import argparse

import sys

NAME = "train"
HELP = "Train VALL-E on prepared data with Trainer (any TrainingArguments after `--`; works under torchrun/accelerate)."


def add_arguments(parser) -> None:
    parser.add_argument("data", help="folder written by `valle prepare` (or any load_from_disk dataset with "
                        "input_ids, codes, num_frames)")
    parser.add_argument("--model", required=True,
                        help="a VallEConfig JSON (start from scratch) or a model folder / Hub id (continue from it)")
    parser.add_argument("--processor", default=None, help="VallEProcessor folder, saved with the model")
    parser.add_argument("--eval-data", default=None, help="prepared evaluation data (default: --eval-fraction)")
    parser.add_argument("--eval-fraction", type=float, default=0.0, help="hold out this fraction of DATA for eval")
    parser.add_argument("--alignment-examples", type=int, default=16,
                        help="eval utterances on which each evaluation also checks that the AR reads its text "
                             "(eval_ar_alignment_heads, eval_ar_best_head_*; see `valle alignment`); 0 = off")
    parser.add_argument("--mode", choices=("both", "ar", "nar"), default="both", help="which decoders to train")
    parser.add_argument("--max-tokens", type=int, default=6000,
                        help="acoustic frames per device per batch (utterances x longest; paper: ~6k per GPU)")
    parser.add_argument("--max-batch-size", type=int, default=None, help="cap on utterances per batch")
    parser.add_argument("--prompts", action="store_true",
                        help="give the NAR a prompt from another utterance of the same speaker (needs a speaker column)")
    parser.add_argument("--join-same-speaker", type=float, default=0.0, metavar="FRACTION",
                        help="add FRACTION joined rows per utterance: two utterances of one speaker as one sequence, "
                             "so that the AR learns VALL-E mode's joint from a prompt into a new sentence (needs "
                             "--processor and a speaker column; 0 = off)")
    parser.add_argument("--join-max-frames", type=int, default=None,
                        help="longest joined row in codec frames (default: the longest utterance of DATA)")
    parser.add_argument("--resume", action="store_true", help="resume from the latest checkpoint-* in the output dir")
    parser.add_argument("--resume-from", default=None, help="resume from this checkpoint folder")
    parser.add_argument("--dataset-name", action="append", default=None, help="Hub id of the data, for the card")
    parser.add_argument("training_arguments", nargs=argparse.REMAINDER, metavar="-- TRAINING_ARGUMENTS",
                        help="after DATA (put the options above before DATA): `--` then any TrainingArguments, e.g. "
                        "-- --output_dir runs/x --num_train_epochs 10 --bf16")


def run(args) -> int:
    import json
    import os

    import datasets
    from transformers import HfArgumentParser, TrainingArguments

    from configuration_valle import VallEConfig
    from modeling_valle import VallEForConditionalCodecGeneration
    from valle.training import end_distributed, paper_training_defaults, train

    remaining = list(args.training_arguments)
    if remaining and remaining[0] == "--":
        remaining = remaining[1:]
    own = {"--model", "--processor", "--eval-data", "--eval-fraction", "--mode", "--max-tokens", "--max-batch-size",
           "--prompts", "--resume", "--resume-from", "--dataset-name", "--alignment-examples", "--join-same-speaker",
           "--join-max-frames"}
    misplaced = sorted(own.intersection(item.split("=")[0] for item in remaining))
    if misplaced:
        print(f"error: {', '.join(misplaced)} came after DATA, where only TrainingArguments go. Write "
              "`valle train --model ... [options] DATA -- --output_dir ... [TrainingArguments]`.", file=sys.stderr)
        return 2
    if args.alignment_examples < 0:
        print(f"error: --alignment-examples must be >= 0 (0 = off), got {args.alignment_examples}.", file=sys.stderr)
        return 2
    if args.join_same_speaker < 0 or (args.join_same_speaker and not args.processor):
        print("error: --join-same-speaker needs a fraction >= 0 and --processor (the word separator between the two "
              f"utterances comes from its tokenizer); got {args.join_same_speaker}"
              f"{'' if args.processor else ' without --processor'}.", file=sys.stderr)
        return 2
    parser = HfArgumentParser(TrainingArguments)
    parser.set_defaults(remove_unused_columns=False, **paper_training_defaults())
    try:
        (training_args,) = parser.parse_args_into_dataclasses(args=remaining)
    except SystemExit as stop:  # argparse already printed the problem
        return int(stop.code or 2)
    try:
        train_data = datasets.load_from_disk(args.data)
        eval_data = datasets.load_from_disk(args.eval_data) if args.eval_data else None
        if eval_data is None and args.eval_fraction > 0:
            split = train_data.train_test_split(test_size=args.eval_fraction, seed=training_args.seed)
            train_data, eval_data = split["train"], split["test"]
        if args.model.endswith(".json"):
            with open(args.model, encoding="utf-8") as handle:
                model = VallEForConditionalCodecGeneration(VallEConfig(**json.load(handle)))
        else:
            model = VallEForConditionalCodecGeneration.from_pretrained(args.model)
        processor = None
        if args.processor:
            from processing_valle import VallEProcessor

            processor = VallEProcessor.from_pretrained(args.processor)
        resume = args.resume_from or (True if args.resume else None)
        folder = training_args.output_dir
        if resume is True and not (
            os.path.isdir(folder) and any(name.startswith("checkpoint-") for name in os.listdir(folder))
        ):
            raise ValueError(f"--resume: no checkpoint-* folder in {folder} to resume from.")
    except (ValueError, TypeError, OSError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    trainer = train(
        model,
        training_args,
        train_data,
        eval_data,
        train_mode=args.mode,
        max_tokens=args.max_tokens,
        max_batch_size=args.max_batch_size,
        prompt_from_same_speaker=args.prompts,
        resume_from_checkpoint=resume,
        processor=processor,
        card_datasets=args.dataset_name,
        alignment_examples=args.alignment_examples,
        join_same_speaker=args.join_same_speaker,
        join_max_frames=args.join_max_frames,
    )
    if trainer.is_world_process_zero():
        print(f"Saved the model in {training_args.output_dir} after {trainer.state.global_step} steps.")
    end_distributed()
    return 0
