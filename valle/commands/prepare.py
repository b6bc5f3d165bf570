"""`valle prepare SOURCE OUTPUT_DIR`: audio + transcripts -> phoneme ids and EnCodec codes, resumable."""

from __future__ import annotations

import sys

NAME = "prepare"
HELP = "Prepare a dataset for training: phoneme ids and EnCodec codes, once, resumable (run it again to continue)."


def add_arguments(parser) -> None:
    parser.add_argument(
        "source",
        help="a folder of recordings with transcripts (utt.wav + utt.txt / utt.normalized.txt, or metadata.csv), a "
        "folder written by datasets' save_to_disk, or a Hub dataset name",
    )
    parser.add_argument("output_dir", help="where the prepared dataset goes (read it with datasets.load_from_disk)")
    parser.add_argument("--processor", required=True, help="VallEProcessor folder or Hub id (tokenizer + codec)")
    parser.add_argument("--split", default="train", help="split of a Hub dataset or DatasetDict (default: train)")
    parser.add_argument("--config", dest="config_name", default=None, help="configuration of a Hub dataset")
    parser.add_argument("--audio-column", default="audio", help="column of the recordings (default: audio)")
    parser.add_argument("--text-column", default="text",
                        help="column of the transcripts (default: text; LibriTTS on the Hub: text_normalized)")
    parser.add_argument("--speaker-column", default=None,
                        help="default: 'speaker' or 'speaker_id' when the source has one")
    parser.add_argument("--id-column", default=None, help="default: 'id' when the source has it, else the row number")
    parser.add_argument("--language", default=None, help="espeak language of the transcripts (default: the tokenizer's)")
    parser.add_argument("--min-seconds", type=float, default=0.5, help="skip shorter recordings (default: 0.5)")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="skip longer recordings (default: 20)")
    parser.add_argument("--shard-size", type=int, default=1000, help="rows per resumable shard")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per map batch")
    parser.add_argument("--codec-batch-size", type=int, default=None,
                        help="clips per codec call (default: 16 on a GPU, 1 on the CPU, where it is faster)")
    parser.add_argument("--num-proc", type=int, default=None, help="worker processes (with a CPU codec)")
    parser.add_argument("--device", default=None, help="codec device: cuda, cuda:1, cpu (default: cuda if available)")
    parser.add_argument("--max-shards", type=int, default=None, help="stop after this many new shards")
    parser.add_argument("--overwrite", action="store_true", help="discard a previous preparation in OUTPUT_DIR")


def run(args) -> int:
    import logging

    from processing_valle import VallEProcessor

    from valle.data import prepare_dataset

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        processor = VallEProcessor.from_pretrained(args.processor)
        report = prepare_dataset(
            args.source,
            processor,
            args.output_dir,
            split=args.split,
            config_name=args.config_name,
            audio_column=args.audio_column,
            text_column=args.text_column,
            speaker_column=args.speaker_column,
            id_column=args.id_column,
            language=args.language,
            min_seconds=args.min_seconds,
            max_seconds=args.max_seconds,
            shard_size=args.shard_size,
            batch_size=args.batch_size,
            codec_batch_size=args.codec_batch_size,
            num_proc=args.num_proc,
            device=args.device,
            max_shards=args.max_shards,
            overwrite=args.overwrite,
        )
    except (ValueError, TypeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.summary())
    if not report.complete:
        print("Run the same command again to continue.")
    return 0
