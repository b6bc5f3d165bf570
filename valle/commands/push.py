"""`valle push FOLDER REPO_ID`: share a saved model folder as a self-contained Hub repository."""

from __future__ import annotations

import sys

NAME = "push"
HELP = "Upload a saved VALL-E folder (weights, configs, processor, code, card) to the Hugging Face Hub."


def add_arguments(parser) -> None:
    parser.add_argument("folder", help="folder written by model.save_pretrained (and processor.save_pretrained)")
    parser.add_argument("repo_id", help="Hub repository id, 'user-or-org/model-name'")
    parser.add_argument(
        "--private", action="store_true", help="create the repository as private (no effect on an existing one)"
    )
    parser.add_argument("--revision", default=None, help="branch to upload to (created if missing); default: main")
    parser.add_argument("--commit-message", default=None, help="message of the upload commit")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="only list the files that would be uploaded and what would be added to the folder; change nothing",
    )


def run(args) -> int:
    from valle.hub import HubUploadError, plan_upload, push_folder, validate_hub_repo_id

    try:
        validate_hub_repo_id(args.repo_id)
        plan = plan_upload(args.folder)
    except HubUploadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)

    if args.dry_run:
        target = args.repo_id + (f" (branch {args.revision})" if args.revision else "")
        print(f"Would upload {len(plan.files)} files from {plan.folder} to {target}:")
        for name in plan.files:
            note = ""
            if name in plan.code_to_copy:
                note = f"  (copied in first from {plan.code_to_copy[name]})"
            elif name == "README.md" and plan.write_card:
                note = "  (model card written first)"
            print(f"  {name}{note}")
        if plan.left_out:
            print("Left out (stay local): " + ", ".join(plan.left_out))
        return 0

    commit = push_folder(
        args.folder,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
    )
    url = getattr(commit, "commit_url", None) or f"https://huggingface.co/{args.repo_id}"
    print(f"Uploaded {len(plan.files)} files to {args.repo_id}: {url}")
    return 0
