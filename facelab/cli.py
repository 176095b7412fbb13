"""`python -m facelab ...`: the library from the command line. Errors print one clear line, exit 2."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable

from facelab.errors import FaceLabError

# Sub-commands register here: name -> (add_arguments, run). Model commands live in their own modules.
Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="data source: synthetic, olivetti[:DIR], lfw[:min_faces=N], FOLDER, FILE.zip, FILE.csv")
    p.add_argument("--size", type=int, default=64, help="face size in pixels (default 64)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _data_run(args: argparse.Namespace) -> int:
    """Describe a data source: people, image counts, image size and skipped files."""
    from facelab.data import load_dataset

    ds = load_dataset(args.spec, image_size=args.size)
    summary = ds.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{ds.source}: {summary['images']} images of {ds.n_people} people, {ds.image_size[0]}x{ds.image_size[1]}")
    for name, count in summary["counts"].items():
        print(f"  {name}: {count}")
    if ds.skipped:
        print(f"skipped {len(ds.skipped)} file(s):")
        for s in ds.skipped:
            print(f"  {s.path}: {s.reason}")
    return 0


def _commands() -> tuple[dict[str, Command], frozenset[str]]:
    """Every sub-command, and the names of those that need Keras."""
    commands: dict[str, Command] = {"data": (_data_args, _data_run)}
    try:
        from facelab.commands import COMMANDS, MODEL_COMMANDS  # train / evaluate / identify, ...
    except ImportError:
        COMMANDS, MODEL_COMMANDS = {}, frozenset()
    commands.update(COMMANDS)
    return commands, MODEL_COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m facelab", description="FaceLab face recognition lab")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    commands, model_commands = _commands()
    for name, (add_args, run) in commands.items():
        p = sub.add_parser(name, help=(run.__doc__ or "").strip().splitlines()[0] if run.__doc__ else None)
        # -v also after the sub-command; SUPPRESS leaves the main parser's value when it is not given there
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log progress")
        add_args(p)
        p.set_defaults(run=run, needs_models=name in model_commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse, run, and turn a `FaceLabError` into one message on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not args.verbose:  # OpenCV's own warnings (a camera that will not open) before FaceLab's one line
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    if args.needs_models and not args.verbose:
        from facelab.device import start_backend_quietly

        start_backend_quietly()
    try:
        return args.run(args)
    except FaceLabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
