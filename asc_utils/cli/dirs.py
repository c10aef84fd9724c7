"""`asc dirs download`: the 66 MicIRP microphone impulse responses for DIR augmentation."""

from __future__ import annotations

import argparse

from asc_utils.dirs import download_micirp, micirp_checksums


def register(sub: argparse._SubParsersAction) -> None:
    """Add `dirs download`."""
    dirs = sub.add_parser("dirs", help="device impulse responses for DIR augmentation (MicIRP)")
    dirs_sub = dirs.add_subparsers(dest="dirs_command", required=True, metavar="ACTION")
    p = dirs_sub.add_parser(
        "download", help="download the 66 MicIRP impulse responses, verifying each sha256",
        description="Download the 66 MicIRP impulse responses, verifying each sha256. Verified files are kept and an "
                    "interrupted file is resumed when the command runs again. Offline? Use a mirror with --base-url, or "
                    "train with impulse responses you have as .wav files (`asc train base --dir-dir FOLDER`); without "
                    "either, training uses generated responses.")
    p.add_argument("--dest", default=None, help="output folder (default: <cache>/micirp, found there automatically)")
    p.add_argument("--base-url", default=None, help="mirror URL (default: $ASC_MICIRP_URL or the cpjku_dcase23 repository)")
    p.set_defaults(func=run_download)


def run_download(args: argparse.Namespace) -> int:
    """Fetch the MicIRP impulse responses and say where they are."""
    dest = download_micirp(args.dest, base_url=args.base_url)
    print(f"MicIRP: {len(micirp_checksums())} verified impulse responses in {dest}")
    return 0
