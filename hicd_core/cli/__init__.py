"""Command line: ``python -m hicd_core {codes,synth,cohort,sweep,report,export-meds} ...``.

Each sub-command lives in its own module with a ``register(sub)`` that adds its parser and sets
``func``; this module only imports them and dispatches. Heavy libraries are imported inside the
command functions, so ``--help`` is quick. Bad arguments and bad input give a one-line error and a
non-zero exit, never a traceback; a command whose module cannot be imported stays listed and says
why when it is run.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from hicd_core.cli.common import CliError

#: Sub-command module -> the commands it registers, in help order.
COMMAND_MODULES = {"codes": ("codes",), "data": ("synth", "cohort"), "sweep": ("sweep",),
                   "report": ("report",), "verify": ("verify",), "export": ("export-meds",),
                   "status": ("status",)}


def _unavailable(names: tuple[str, ...], error: ImportError):
    """A stand-in ``register`` for a command whose module failed to import: the command stays
    listed, and running it prints the import error instead of argparse's "invalid choice"."""
    def run(args: argparse.Namespace) -> int:
        raise CliError(f"the {args.command} command cannot be loaded: {error}")

    def register(sub: argparse._SubParsersAction) -> None:
        for name in names:
            # No option prefix: whatever follows the command name is taken as-is, so it reaches run().
            parser = sub.add_parser(name, help=f"(unavailable: {error})", add_help=False, prefix_chars="\0")
            parser.add_argument("rest", nargs=argparse.REMAINDER)
            parser.set_defaults(func=run)
    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hicd_core",
                                     description="HICD Explorer engine: ICD hierarchy, cohorts, models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module, commands in COMMAND_MODULES.items():
        try:
            register = importlib.import_module(f"hicd_core.cli.{module}").register
        except ImportError as exc:
            register = _unavailable(commands, exc)
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"error: a library this command needs cannot be imported: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
