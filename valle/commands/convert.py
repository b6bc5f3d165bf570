"""`valle convert CHECKPOINT OUTPUT_DIR`: turn a lifeiteng/vall-e or VALL-E X checkpoint into a from_pretrained folder."""

from __future__ import annotations

import sys

NAME = "convert"
HELP = "Convert a lifeiteng/vall-e or VALL-E X checkpoint (.pt) into a folder that from_pretrained loads."

_DTYPES = ("float32", "float16", "bfloat16")


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="the original .pt file (a dict with a 'model' state dict)")
    parser.add_argument("output_dir", help="folder to write: config, safetensors, generation config, processor, card")
    parser.add_argument(
        "--layout",
        choices=("auto", "lifeiteng", "vallex"),
        default="auto",
        help="checkpoint layout; auto: VALL-E X when it has language embeddings, else lifeiteng (default: auto)",
    )
    parser.add_argument(
        "--symbols",
        default=None,
        help="lifeiteng only: its unique_text_tokens.k2symbols, to write a tokenizer with the same ids "
        "(VALL-E X's vocabulary is built in)",
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="load with torch.load(weights_only=False), which can run code stored in the file; only for files you "
        "trust, when the safe load refuses them",
    )
    parser.add_argument(
        "--state-dict-key",
        default="model",
        help="entry of the checkpoint that holds the weights (default: model; lifeiteng's averaged ones: model_avg; "
        "'' for a file that is a bare state dict)",
    )
    parser.add_argument(
        "--num-heads", type=int, default=None, help="attention heads, when the width is not 1024 (which means 16)"
    )
    parser.add_argument(
        "--accept-inexact",
        action="store_true",
        help="convert although the stored prefix_mode is not 1 (the NAR then behaves like prefix_mode=1)",
    )
    parser.add_argument("--dtype", choices=_DTYPES, default=None, help="cast the weights (default: keep)")
    parser.add_argument("--base-model", default=None, help="Hub id of the original weights, for the model card")
    parser.add_argument("--license", default="other", help="licence of the weights for the model card (default: other)")
    parser.add_argument(
        "--codec", default="facebook/encodec_24khz", help="EnCodec the processor uses (default: facebook/encodec_24khz)"
    )
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty OUTPUT_DIR")


def run(args) -> int:
    import torch

    from valle.convert import ConversionError, convert_checkpoint

    try:
        model = convert_checkpoint(
            args.checkpoint,
            args.output_dir,
            layout=args.layout,
            symbols=args.symbols,
            key=args.state_dict_key or None,
            trust_pickle=args.trust_pickle,
            num_attention_heads=args.num_heads,
            accept_inexact=args.accept_inexact,
            dtype=getattr(torch, args.dtype) if args.dtype else None,
            base_model=args.base_model,
            license=args.license,
            codec=args.codec,
            overwrite=args.overwrite,
        )
    except (ConversionError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    config = model.config
    print(
        f"Converted {args.checkpoint} -> {args.output_dir}: {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{config.num_hidden_layers} layers x width {config.hidden_size}, {config.num_codebooks} codebooks, "
        f"audio BOS {'yes' if config.use_audio_bos else 'no'}, {config.num_languages or 'no'} language embeddings."
    )
    return 0
