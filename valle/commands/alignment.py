"""`valle alignment`: do the AR's attention heads follow the phonemes? (see `valle.alignment`)."""

from __future__ import annotations

import sys

NAME = "alignment"
HELP = ("Check that a VALL-E's AR has learned to read its text: text-to-audio attention of each AR head on "
        "prepared recordings (teacher-forced).")


def add_arguments(parser) -> None:
    parser.add_argument("data", help="a prepared dataset (`valle prepare` output: input_ids and codes), ideally "
                                     "held-out recordings")
    parser.add_argument("--model", required=True, help="VALL-E folder or Hub id")
    parser.add_argument("--limit", type=int, default=32,
                        help="recordings to average over, spread evenly over the dataset (default: 32)")
    parser.add_argument("--json", dest="json_path", help="also write the statistics here as JSON")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")


def run(args) -> int:
    import json

    import datasets
    import torch

    from modeling_valle import VallEForConditionalCodecGeneration
    from valle.alignment import ar_alignment, evenly_spaced, markdown_table

    if args.limit < 1:
        print(f"valle alignment: --limit must be at least 1, got {args.limit}.", file=sys.stderr)
        return 2
    try:
        data = datasets.load_from_disk(args.data)
    except FileNotFoundError:
        print(f"valle alignment: {args.data} is not a prepared dataset; make one with `valle prepare SOURCE "
              f"{args.data} --processor ...`.", file=sys.stderr)
        return 2
    if isinstance(data, datasets.DatasetDict):
        print(f"valle alignment: {args.data} holds several splits ({', '.join(data)}); pass one of "
              f"{', '.join(f'{args.data}/{name}' for name in data)}.", file=sys.stderr)
        return 2
    missing = {"input_ids", "codes"} - set(data.column_names)
    if missing:
        print(f"valle alignment: {args.data} has no {', '.join(sorted(missing))} column; it must be the output of "
              "`valle prepare`.", file=sys.stderr)
        return 2
    data = evenly_spaced(data, args.limit)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = VallEForConditionalCodecGeneration.from_pretrained(args.model).to(device)
    result = ar_alignment(model, data)
    print(markdown_table(result))
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump({"model": args.model, "data": args.data, **result}, handle, indent=1)
        print(f"statistics: {args.json_path}")
    return 0
