"""`valle lab`: the offline speech lab (synthetic corpus, small EnCodec, judges, report)."""

from __future__ import annotations

import argparse
import os
import sys
import time

NAME = "lab"
HELP = ("Offline speech lab: the espeak corpus, a small EnCodec and a CTC judge, their report, and the lab "
        "VALL-E (tts, bundle).")

STEPS = ("corpus", "codec", "decoder", "judge", "report", "publish", "tts", "bundle", "codes", "all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "step", choices=STEPS,
        help="corpus: synthesise the dataset; codec: train the EnCodec; decoder: go on training the codec's decoder "
             "alone (codes unchanged, better audio; DIR/codec_decoder); judge: train the CTC recogniser; "
             "report: measure judges and codec round trip; publish: fp16 copies of codec and judge to --to; "
             "tts: prepare the corpus with the lab codec and train the lab VALL-E (DIR/tts/model); "
             "bundle: fp16 copy of that model with prompt voices to --bundle-to (the built-in model); "
             "codes: how predictable each codebook is from the others in prepared data (what an NAR can learn); "
             "all: corpus, codec, judge, report, tts in order (rebuilds the lab and its VALL-E).",
    )
    parser.add_argument("--dir", default="runs/lab",
                        help="lab folder: corpus/, codec/, judge/ and report/ live under it (default: runs/lab)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the corpus and the trainings; bundle: the draw of its voices (default: 0)")
    group = parser.add_argument_group("corpus")
    group.add_argument("--train-speakers", type=int, default=160, help="training voices (default: 160)")
    group.add_argument("--validation-speakers", type=int, default=16, help="validation voices (default: 16)")
    group.add_argument("--test-speakers", type=int, default=24, help="held-out test voices (default: 24)")
    group.add_argument("--train-utterances", type=int, default=40, help="utterances per training speaker")
    group.add_argument("--heldout-utterances", type=int, default=20, help="utterances per validation/test speaker")
    group.add_argument("--workers", type=int, default=1,
                       help="corpus: synthesis processes; tts: `valle prepare` processes (default: 1)")
    group = parser.add_argument_group("training (codec and judge)")
    group.add_argument("--codec-steps", type=int, default=200_000, help="stop the codec after this many steps")
    group.add_argument("--codec-minutes", type=float, default=None, help="stop the codec after this many minutes")
    group.add_argument("--decoder-steps", type=int, default=200_000, help="stop the decoder-only stage after this many steps")
    group.add_argument("--decoder-minutes", type=float, default=None, help="stop the decoder-only stage after this many minutes")
    group.add_argument("--decoder-decay-steps", type=int, default=0,
                       help="anneal the decoder stage's learning rate (half cosine, to 5%%) over its last N steps "
                            "before --decoder-steps (default 0: constant)")
    group.add_argument("--judge-steps", type=int, default=100_000, help="stop the recogniser after this many steps")
    group.add_argument("--judge-minutes", type=float, default=None, help="stop the recogniser after this many minutes")
    group.add_argument("--threads", type=int, default=1, help="torch threads for training (default: 1)")
    group.add_argument("--ar-steps", type=int, default=None, help="training steps of the lab VALL-E's AR decoder "
                       "(default: valle.lab.tts.RECIPE)")
    group.add_argument("--nar-steps", type=int, default=None, help="training steps of its NAR decoder (with "
                       "--init-from, 0 keeps a decoder of that model as it is; the same for --ar-steps)")
    group.add_argument("--join-same-speaker", type=float, default=0.0, metavar="FRACTION",
                       help="tts: add FRACTION joined rows (two utterances of one speaker) per utterance to the AR's "
                            "data, so that it learns VALL-E mode's joint into a new sentence (default 0: off)")
    group.add_argument("--learning-rate", type=float, default=None,
                       help="tts: peak learning rate of both trainings (default: valle.lab.tts.RECIPE, 1e-3); lower "
                            "for a last stage that goes on from --init-from")
    group.add_argument("--init-from", default=None,
                       help="tts: go on training this lab VALL-E folder (e.g. valle/assets/lab-valle) instead of a "
                            "new model, e.g. on a larger corpus (its vocabulary and config are kept)")
    group = parser.add_argument_group("report and codes")
    group.add_argument("--per-speaker", type=int, default=3, help="test utterances per held-out speaker")
    group.add_argument("--codec", default=None, help="codec folder to report on (default: DIR/codec/model)")
    group.add_argument("--judge", default=None, help="recogniser folder to report with (default: DIR/judge/model)")
    group.add_argument("--data", default=None,
                       help="codes: a `valle prepare` output folder (default: DIR/tts/data/train)")
    group = parser.add_argument_group("publish and bundle")
    group.add_argument("--bundle-to", default="valle/assets/lab-valle",
                       help="where bundle writes the built-in model folder (default: valle/assets/lab-valle)")
    group.add_argument("--results", default=None,
                       help="bundle: a `valle evaluate --lab` summary.json of this model, shown on the model card")
    group.add_argument("--top-k", type=int, default=None,
                       help="bundle: the AR's default top-k, written to the bundle's generation_config.json "
                            "(default: the trained model's, 50)")
    group.add_argument("--temperature", type=float, default=None,
                       help="bundle: the AR's default sampling temperature (default: the trained model's, 1)")
    group.add_argument("--to", default="lab_artifacts", help="where publish writes codec/ and judge/ (default: lab_artifacts)")


def _paths(args):
    return {name: os.path.join(args.dir, name) for name in ("corpus", "codec", "codec_decoder", "judge", "report")}


def run(args) -> int:
    import torch

    torch.set_num_threads(max(1, args.threads))
    paths = _paths(args)
    steps = ["corpus", "codec", "judge", "report", "tts"] if args.step == "all" else [args.step]
    started = time.time()
    for step in steps:
        if step == "corpus":
            from valle.lab.corpus import CorpusConfig, build_corpus

            if args.step == "all" and os.path.isfile(os.path.join(paths["corpus"], "dataset_dict.json")):
                print(f"corpus: {paths['corpus']} already exists, keeping it")
                continue
            config = CorpusConfig(
                seed=args.seed, train_speakers=args.train_speakers, validation_speakers=args.validation_speakers,
                test_speakers=args.test_speakers, train_utterances_per_speaker=args.train_utterances,
                heldout_utterances_per_speaker=args.heldout_utterances,
            )
            corpus = build_corpus(config, paths["corpus"], workers=args.workers)
            print(f"corpus: {paths['corpus']} {dict((k, len(v)) for k, v in corpus.items())} utterances")
        elif step == "codec":
            from valle.lab.codec import train_codec

            train_codec(paths["corpus"], paths["codec"], max_steps=args.codec_steps, max_minutes=args.codec_minutes,
                        seed=args.seed)
            print(f"codec: {os.path.join(paths['codec'], 'model')} (checkpoint: {paths['codec']}/checkpoint.pt)")
        elif step == "decoder":
            from valle.lab.codec import train_codec

            train_codec(paths["corpus"], paths["codec_decoder"], max_steps=args.decoder_steps,
                        max_minutes=args.decoder_minutes, seed=args.seed, decay_steps=args.decoder_decay_steps,
                        decoder_only_from=os.path.join(paths["codec"], "checkpoint.pt"))
            print(f"decoder: {os.path.join(paths['codec_decoder'], 'model')}")
        elif step == "judge":
            from valle.lab.judges import train_recognizer

            train_recognizer(paths["corpus"], paths["judge"], max_steps=args.judge_steps,
                             max_minutes=args.judge_minutes, seed=args.seed)
            print(f"judge: {os.path.join(paths['judge'], 'model')}")
        elif step == "report":
            from valle.lab.report import build_report, markdown_table

            from valle.lab.artifacts import trained_codec_dir

            codec_dir = args.codec or trained_codec_dir(args.dir)
            judge_dir = args.judge or os.path.join(paths["judge"], "model")
            for needed in (codec_dir, judge_dir):
                if not os.path.isfile(os.path.join(needed, "config.json")):
                    print(f"valle lab report: {needed} is missing; run `valle lab codec` and `valle lab judge` "
                          f"with --dir {args.dir} first.", file=sys.stderr)
                    return 2
            report = build_report(paths["corpus"], codec_dir, judge_dir, paths["report"],
                                  per_speaker=args.per_speaker, seed=args.seed)
            print(markdown_table(report))
            print(f"report: {os.path.join(paths['report'], 'report.json')} and wavs in {paths['report']}/wavs")
        elif step == "tts":
            from valle.lab.tts import run_recipe

            steps = {mode: value for mode, value in (("ar", args.ar_steps), ("nar", args.nar_steps))
                     if value is not None}
            try:
                run_recipe(args.dir, seed=args.seed, steps=steps, num_proc=max(1, args.workers),
                           init_from=args.init_from, join_same_speaker=args.join_same_speaker,
                           learning_rate=args.learning_rate)
            except ValueError as error:
                print(f"valle lab tts: {error}", file=sys.stderr)
                return 2
        elif step == "bundle":
            from valle.lab.tts import build_bundle, training_summary

            results = None
            if args.results:
                import json

                with open(args.results) as handle:
                    results = json.load(handle)
                if "table" not in results:
                    print(f"valle lab bundle: {args.results} is not a `valle evaluate` summary (no table); give "
                          "the summary.json of an evaluation of this model.", file=sys.stderr)
                    return 2
            sampling = {name: value for name, value in (("top_k", args.top_k), ("temperature", args.temperature))
                        if value is not None}
            try:
                summary = build_bundle(args.dir, args.bundle_to, seed=args.seed, training=training_summary(args.dir),
                                       results=results, sampling=sampling)
            except ValueError as error:
                print(f"valle lab bundle: {error}", file=sys.stderr)
                return 2
            print(f"bundle: {args.bundle_to} {summary['bytes']}, voices: {[p['name'] for p in summary['prompts']]}")
        elif step == "codes":
            import json

            import datasets

            from valle.lab.codes import codebook_statistics, markdown_table

            data_dir = args.data or os.path.join(args.dir, "tts", "data", "train")
            if not os.path.isfile(os.path.join(data_dir, "dataset_info.json")):
                print(f"valle lab codes: {data_dir} holds no prepared data; run `valle lab tts --dir {args.dir}` "
                      "or `valle prepare`, or pass --data.", file=sys.stderr)
                return 2
            # 1024 codes per codebook: the lab codec and facebook/encodec_24khz alike.
            statistics = codebook_statistics(datasets.load_from_disk(data_dir)["codes"], codebook_size=1024)
            print(markdown_table(statistics))
            print(json.dumps({key: value for key, value in statistics.items() if key != "nats"}))
        elif step == "publish":
            from valle.lab.artifacts import publish

            summary = publish(args.dir, args.to)
            print(f"publish: {args.to}/codec and {args.to}/judge {summary}")
    print(f"valle lab {args.step}: done in {(time.time() - started) / 60:.1f} minutes")
    return 0
