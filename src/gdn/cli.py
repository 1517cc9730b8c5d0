"""The `gdn` command line: one subcommand per module in `gdn.commands`.

Each command module defines `HELP` (one line), `add_arguments(parser)` and
`run(args) -> int` (the exit code). Adding a command is one line in `COMMANDS`. Only the
module of the command being run is imported, so `gdn synth` does not pay for the engine.

Errors the user can fix are `gdn.errors.GdnError`s, raised anywhere and caught here, once:
one line `gdn COMMAND: error: ...` on stderr and the error's exit code (2 for bad input).
Ctrl-C outside training (which stops itself at a step boundary) ends with exit code 130.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

from gdn.errors import GdnError, user_message

# subcommand -> (module under gdn.commands, one-line summary for `gdn --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "synthesise data, train gdn_tiny and tsn_tiny with one budget, compare them"),
    "synth": ("synth", "write the synthetic temporal dataset in the SSv1 or SSv2 layout"),
    "check-data": ("check_data", "open every annotated file of a dataset and list the bad ones"),
    "bench-data": ("bench_data", "data-loading clips/s per worker for webm and JPEG sources"),
    "train": ("train", "train a model from a YAML config and overrides"),
    "test": ("test", "evaluate a checkpoint: top-1, top-5, mean class accuracy"),
    "ensemble": ("ensemble", "average the saved softmax scores of several models"),
    "predict": ("predict", "top-k classes of videos, of the windows of long videos, or of a live stream"),
    "explain": ("explain", "Grad-CAM per frame and a frame-order test: where and when the model looked"),
    "features": ("features", "pooled pre-classifier embeddings of videos, per video or per window"),
    "profile": ("profile", "parameters and GMACs of models; Table 1 of the paper"),
    "bench": ("bench", "training and inference speed side by side with tsn_r50"),
    "export": ("export", "export a checkpoint to ONNX and check it against onnxruntime"),
    "convert": ("convert", "a TSM-repository or MMAction2 TSN/TSM/I3D checkpoint as a gdn checkpoint"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; the arguments of `command` only (all commands are listed in the help)."""
    parser = argparse.ArgumentParser(
        prog="gdn", description="Grouped Decomposed Networks for video action recognition."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, summary) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary)
        if name == command:
            module = importlib.import_module(f"gdn.commands.{module_name}")
            p.description = module.HELP
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if a in COMMANDS), None)
    args = build_parser(command).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args._run(args) or 0)
    except GdnError as e:
        sys.stdout.flush()  # what the command printed comes first: the error is the last line
        print(f"gdn {args.command}: {e.kind}: {user_message(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"gdn {args.command}: interrupted", file=sys.stderr)
        return 130


def console() -> None:
    """The `gdn` command: `main`, then exit with its code. Once the command is over, a Ctrl-C
    during the interpreter's own exit (finalizers, worker joins) changes nothing: ignore it
    rather than let it print a traceback."""
    code = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":
    console()
