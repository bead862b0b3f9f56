"""The `imgpipe` command: local tools that need neither Docker nor an AWS account."""

from __future__ import annotations

import argparse
import importlib

# Each subcommand lives in its own module, imported only when used, so `imgpipe process`
# does not pay for moto and the SAM translator.
COMMANDS = {
    "process": ("imgpipe_local.process_cmd", "run the processing core on local files"),
    "invoke": ("imgpipe_local.invoke_cmd", "invoke a function of template.yaml with an event file"),
    "dev": ("imgpipe_local.dev_cmd", "run the whole stack on 127.0.0.1 until Ctrl-C"),
    "demo": ("imgpipe_local.demo_cmd", "run the whole flow headless once and report"),
    "token": ("imgpipe_local.token_cmd", "print the demo user's access token from a running imgpipe dev"),
    "backfill": ("imgpipe_local.backfill_cmd", "re-render stored avatars after a rendition spec change"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imgpipe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    args, rest = parser.parse_known_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.main(rest) or 0)
