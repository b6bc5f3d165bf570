"""`valle evaluate`: the paper's evaluation protocol (WER and speaker similarity, Table 2), full scale or in the lab."""

from __future__ import annotations

import os
import sys
import time

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
    parser.add_argument("--workers", type=int, default=1,
                        help="processes that share the test cases (default: 1). On a CPU, one per two or more cores "
                             "is faster than one process on all of them; the results are the same. Each loads the "
                             "model and the judges: with several GPUs they take them in turn, on one GPU they share it")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: all cores for one worker, the cores shared out "
                             "among several). Processes started side by side by hand need it too: two processes "
                             "with all threads each on the same cores run several times slower than one")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--by-speaker", action="store_true",
                        help="also print CER (--lab) or WER per speaker and system (always in summary.json)")


def run(args) -> int:
    from valle.evaluation import SYSTEMS, LabNotReady, evaluate, markdown_table, speaker_table

    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {args.seeds}.")
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}.")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}.")
    systems = None  # the default rows of `evaluate`: the paper's Table 2, plus the ablation in the lab
    if args.systems is not None:
        systems = [name.strip() for name in args.systems.split(",") if name.strip()]
        unknown = [name for name in systems if name not in SYSTEMS]
        if unknown or not systems:
            raise ValueError(f"--systems: unknown {unknown or 'empty list'}; choose from {','.join(SYSTEMS)}.")
    options = dict(
        model_name_or_path=args.model, output_dir=args.out, lab=args.lab, lab_dir=args.lab_dir, dataset=args.dataset,
        dataset_config=args.dataset_config or None, split=args.split,
        columns={"audio_column": args.audio_column, "text_column": args.text_column,
                 "speaker_column": args.speaker_column, "id_column": args.id_column},
        asr_model=args.asr_model, speaker_model=args.speaker_model, seeds=list(range(args.seeds)),
        systems=systems, min_seconds=args.min_seconds, max_seconds=args.max_seconds,
        prompt_seconds=args.prompt_seconds, selection_seed=args.selection_seed, limit=args.limit,
        generation_kwargs=sampling_kwargs(args), max_new_seconds=args.max_new_seconds, device=args.device,
        save_audio=args.save_audio,
    )
    threads = args.threads
    if threads is None and args.workers > 1:
        threads = max(1, _cores() // args.workers)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    try:
        if args.workers > 1:
            exit_codes = _run_workers(options, args.workers, threads, progress=not args.no_progress)
            kept = f"The results so far are kept in {args.out}/results.jsonl: run the same command again to resume."
            if exit_codes is None:
                print(f"valle evaluate: interrupted. {kept}", file=sys.stderr)
                return 130
            if 2 in exit_codes:  # bad input or settings: every worker met it, and a rerun as it is would too
                print("valle evaluate: the workers stopped on the error above; fix it and run the command again.",
                      file=sys.stderr)
                return 2
            failed = sum(code != 0 for code in exit_codes)
            if failed:
                print(f"valle evaluate: {failed} of {args.workers} workers stopped (exit codes {exit_codes}; their "
                      f"errors are above). {kept}", file=sys.stderr)
                return 1
        # One worker; or, after several, the summary: every result is in the file, nothing is computed again.
        summary = evaluate(**options, progress=not args.no_progress and args.workers == 1)
    except LabNotReady as error:
        print(f"valle evaluate --lab: {error}", file=sys.stderr)
        return 2
    print(markdown_table(summary))
    if args.by_speaker:
        print("\n" + speaker_table(summary, "cer" if args.lab else "wer"))
    print(f"\nper-utterance results: {args.out}/results.jsonl; summary: {args.out}/summary.json; "
          f"table: {args.out}/table.md")
    return 0


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _run_workers(options: dict, workers: int, threads: int, progress: bool) -> list[int] | None:
    """Runs `evaluate(**options)` in `workers` processes, each scoring its share of the test cases with `threads`
    torch threads into a results file of its own, and shows the results as they arrive; then merges the workers'
    files into `results.jsonl`, also when stopped. Returns the workers' exit codes, or None on Ctrl-C."""
    import multiprocessing
    from pathlib import Path

    from tqdm.auto import tqdm

    from valle.evaluation import RESULTS_FILE, merge_worker_results, worker_results_files

    folder = Path(options["output_dir"])
    merge_worker_results(folder)  # those of an earlier run that was stopped before it could merge them

    def count() -> int:
        files = [folder / RESULTS_FILE, *worker_results_files(folder)]
        return sum(path.read_bytes().count(b"\n") for path in files if path.is_file())

    context = multiprocessing.get_context("spawn")  # a fresh interpreter each: no forked torch or CUDA state
    processes = [context.Process(target=_evaluate_share, daemon=True,
                                 args=({**options, "device": _worker_device(options["device"], number)},
                                       (number, workers), threads))
                 for number in range(workers)]
    for process in processes:
        process.start()
    print(f"valle evaluate: {workers} workers, {threads} torch thread(s) each, results in {folder / RESULTS_FILE}",
          file=sys.stderr)
    bar = tqdm(initial=count(), unit="result", desc="valle evaluate", disable=not progress)
    interrupted = False
    try:
        while any(process.is_alive() for process in processes):
            time.sleep(1.0)
            bar.update(count() - bar.n)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for process in processes:  # a stopped run stops its workers too
            if process.is_alive():
                process.terminate()
            process.join()
        bar.close()
        merge_worker_results(folder)
    return None if interrupted else [process.exitcode for process in processes]


def _worker_device(device: str | None, number: int) -> str | None:
    """The device of worker `number`: with several GPUs and no index given, the workers take them in turn."""
    import torch

    if device not in (None, "cuda") or not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return device
    return f"cuda:{number % torch.cuda.device_count()}"


def _evaluate_share(options: dict, shard: tuple[int, int], threads: int) -> None:
    """One worker of `--workers`: scores its share of the test cases (see `valle.evaluation.run_evaluation`)."""
    import signal

    import torch

    from valle.evaluation import LabNotReady, evaluate

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers,
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # and they exit cleanly (whole lines, files closed)
    torch.set_num_threads(threads)
    try:
        evaluate(**options, progress=False, shard=shard)
    except (LabNotReady, ValueError, TypeError, OSError) as error:
        if os.environ.get("VALLE_DEBUG"):
            raise
        print(f"valle evaluate (worker {shard[0] + 1} of {shard[1]}): error: {error}", file=sys.stderr)
        sys.exit(2)
