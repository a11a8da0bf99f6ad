"""`fitbench download`: a GGUF from the Hugging Face Hub into its standard cache.

    fitbench download --model mixtral-8x7b-instruct [--quant Q4_K_M]
    fitbench download --repo TheBloke/Llama-2-70B-Chat-GGUF --file llama-2-70b-chat.Q6_K.gguf

The local path llama.cpp should open is printed last (stdout); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fitbench.commands._common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, print_json

HELP = "download a GGUF quantization from the Hugging Face Hub"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to download (a catalog entry, or any Hub GGUF)")
    what.add_argument("--model", help="catalog model id (see `fitbench models`)")
    what.add_argument("--quant", help="quantization, e.g. Q4_K_M (default: the model's default)")
    what.add_argument("--repo", help="Hub repository, e.g. TheBloke/Llama-2-70B-Chat-GGUF")
    what.add_argument(
        "--file",
        help="file in the repository; a joined name of -split-a/-b parts or the first shard works",
    )
    what.add_argument("--revision", default="main", help="branch, tag or commit (default: main)")
    parser.add_argument(
        "--keep-parts",
        action="store_true",
        help="keep -split-a/-b parts in the Hugging Face cache after joining them",
    )
    parser.add_argument(
        "--no-compat-check",
        action="store_true",
        help="skip the check of the remote GGUF header against the installed llama.cpp",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


class _Bars:
    """One tqdm bar per file and phase, on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.key: tuple[str, str, int] | None = None

    def __call__(self, p: Any) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        key = (p.phase, p.filename, p.file_index)
        if key != self.key:
            self.close()
            label = {"download": "downloading", "verify": "verifying", "join": "joining"}
            desc = f"{label.get(p.phase, p.phase)} {p.filename}"
            if p.file_count > 1:
                desc += f" ({p.file_index}/{p.file_count})"
            self.bar = tqdm(
                total=p.total,
                initial=p.done,
                desc=desc,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                dynamic_ncols=True,
            )
            self.key = key
        self.bar.update(p.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(args: argparse.Namespace) -> int:
    from fitbench.core.download import hub as download
    from fitbench.core.model.catalog import CatalogError

    by_model = args.model is not None
    by_repo = args.repo is not None or args.file is not None
    if by_model == by_repo or (by_repo and not (args.repo and args.file)):
        print(
            "fitbench download: give either --model ID [--quant Q] or --repo REPO --file FILE",
            file=sys.stderr,
        )
        return EXIT_USAGE
    bars = _Bars(enabled=not args.json and sys.stderr.isatty())
    options: dict[str, Any] = {
        "progress": bars,
        "check_compat": not args.no_compat_check,
        "keep_parts": args.keep_parts,
    }
    try:
        if by_model:
            result = download.download_quant(args.model, args.quant, **options)
        else:
            result = download.download_file(args.repo, args.file, args.revision, **options)
    except KeyboardInterrupt:
        bars.close()
        print(
            "fitbench download: interrupted; the partial file was kept, run the same command "
            "again to resume",
            file=sys.stderr,
        )
        return 130
    except (download.DownloadError, CatalogError) as exc:
        bars.close()
        print(f"fitbench download: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    bars.close()
    if args.json:
        print_json(result.to_dict())
        return EXIT_OK
    how = (
        "already in the cache" if result.reused else f"{result.bytes_fetched / 1e6:.1f} MB fetched"
    )
    if result.resumed_from:
        how += f", resumed after {result.resumed_from / 1e6:.1f} MB"
    check = "SHA-256 verified" if result.verified else "not verified (no hash from the Hub)"
    print(f"{result.repo_id}/{result.filename} @ {result.commit[:12]}: {how}; {check}")
    for note in result.notes:
        print(note)
    print(result.path)
    return EXIT_OK
