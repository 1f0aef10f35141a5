"""The single `optforge` command line: one entry point, one subcommand per module.

Each subcommand lives in `search/commands/<name>.py` and exposes three things:
`HELP` (one line), `add_arguments(parser)` and `run(args) -> int`. The registry below
drives both `optforge --help` and the CLI tests. Errors a user can cause are reported as one
line on stderr with exit code 2 and no traceback (`UserError` and `dsl.RuleError`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module path; order is the order shown in --help.
COMMANDS: dict[str, str] = {
    "show": "search.commands.show",
    "primitives": "search.commands.primitives",
    "export": "search.commands.export",
    "evaluate": "search.commands.evaluate",
    "search": "search.commands.search",
    "report": "search.commands.report",
    "ablate": "search.commands.ablate",
    "regimes": "search.commands.regimes",
}


class UserError(Exception):
    """A problem with what the user asked for: printed as one line, exit code 2."""


def _available_commands() -> dict[str, object]:
    modules = {}
    for name, path in COMMANDS.items():
        try:
            modules[name] = importlib.import_module(path)
        except ModuleNotFoundError as exc:  # a command whose module is not written yet
            if exc.name != path:
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optforge",
        description="Discover optimizers: write or search update rules, evaluate them fairly "
        "against tuned baselines, and export them as torch.optim classes.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _available_commands().items():
        p = sub.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    from dsl.errors import RuleError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._module.run(args) or 0)
    except (UserError, RuleError) as exc:
        print(f"optforge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `optforge primitives | head`
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"optforge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
