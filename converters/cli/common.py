"""What every converter CLI shares: the error-to-exit-code wrapper and common flags."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from converters.errors import ConverterError, UsageError
from converters.models_config import ModelsConfig
from converters.publish import Destination, commit

if TYPE_CHECKING:
    from converters.verify import VerifyReport


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ and Python chatter out of a CLI's output (unless --debug)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def import_tensorflow_quietly(debug: bool) -> None:
    """Import TensorFlow with fd 2 muted: its C++ layer logs on import whatever
    TF_CPP_MIN_LOG_LEVEL says, and stderr is reserved for our one-line errors."""
    if debug or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def new_parser(prog: str, description: str, epilog: str | None = None) -> Parser:
    return Parser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks and TensorFlow's own log output"
    )


def add_destination_flags(parser: argparse.ArgumentParser) -> None:
    """--name/--models-dir/--version/--overwrite: where a conversion lands."""
    group = parser.add_argument_group("destination")
    group.add_argument(
        "--name", required=True, help="model name in models.config (letters, digits, _ - .)"
    )
    group.add_argument(
        "--models-dir",
        type=Path,
        default=Path("models"),
        help="folder holding models.config and one folder per model (default: ./models)",
    )
    group.add_argument(
        "--version",
        type=int,
        help="version number to write (default: one more than the highest existing)",
    )
    group.add_argument(
        "--overwrite", action="store_true", help="replace the version if it already exists"
    )
    group.add_argument(
        "--base-path",
        help="base_path to record in models.config (default: /models/NAME, the container mount)",
    )


def add_verify_flags(
    parser: argparse.ArgumentParser,
    sample_help: str = "inputs to compare on: .npz or .json mapping input names to arrays "
    "(default: random inputs of each input's dtype and shape)",
) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("verification")
    group.add_argument(
        "--no-verify", action="store_true", help="skip the prediction parity check (not advised)"
    )
    group.add_argument(
        "--atol",
        type=float,
        default=None,
        help="max abs difference allowed per output (default 1e-5 for float32, 1e-2 for float16)",
    )
    group.add_argument(
        "--sample",
        type=Path,
        help=sample_help,
    )
    return group


def check_verify_flags(args: argparse.Namespace) -> None:
    """Reject bad verification flags before any model is loaded."""
    if args.atol is not None and args.atol < 0:
        raise UsageError(f"--atol must be >= 0, got {args.atol}")
    if args.sample is not None and not args.sample.is_file():
        raise UsageError(f"--sample {args.sample}: no such file; pass an .npz or .json of inputs")


def print_verify_report(report: VerifyReport) -> None:
    """The parity table, under the same `verify:` heading for every converter."""
    for line in report.lines():
        print(line if line.startswith(" ") else f"verify:    {line}")


def publish_and_report(staged: Path, dest: Destination, base_path: str | None) -> None:
    """Move the verified export into place, update models.config, and say what changed."""
    existed = ModelsConfig.load(dest.config_path, missing_ok=True).get(dest.name)
    entry = commit(staged, dest, base_path=base_path)
    print(f"wrote:     {dest.version_dir}")
    print(
        f"config:    {dest.config_path}: {'updated' if existed else 'added'} {entry.name} "
        f"(base_path {entry.base_path}, versions: {entry.policy.describe()})"
    )


def run_cli(
    main: Callable[[argparse.Namespace], int],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
) -> int:
    """Parse, run, and turn a ConverterError into one stderr line and its exit code."""
    try:
        try:
            args = parser.parse_args(argv)
        except ConverterError as exc:  # raised by an argparse `type=` converter
            parser.error(str(exc))
    except SystemExit as exc:  # usage errors and --help: a return code, so tests can call main()
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "debug", False):
        quiet_tensorflow()
    try:
        return main(args)
    except ConverterError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; nothing was written", file=sys.stderr)
        return 130
