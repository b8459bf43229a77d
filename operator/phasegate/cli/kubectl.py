"""``kubectl phasegate``: the kubectl plugin to read and steer rollouts."""

from __future__ import annotations

import argparse
import sys

from phasegate import __version__

COMMANDS = {
    "get": "list rollouts with phase, weight, state and checkpoints",
    "watch": "follow one rollout live",
    "approve": "approve a phase's gate as a group",
    "promote": "skip to the next phase (--full: to the end)",
    "pause": "stop the phase clock and keep the weight",
    "resume": "continue a paused or held rollout",
    "abort": "roll back now: canary weight to 0",
    "retry": "start the current revision again",
    "report": "print the checkpoints with values and thresholds",
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl phasegate", description="Read and steer phasegate ProgressiveRollouts."
    )
    parser.add_argument("--version", action="version", version=f"phasegate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in COMMANDS.items():
        command = commands.add_parser(name, help=summary, description=summary)
        if name != "get":
            command.add_argument("rollout", help="name of the ProgressiveRollout")
        command.add_argument("-n", "--namespace", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    print(f"kubectl phasegate {args.command}: not available yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
