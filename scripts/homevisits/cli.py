"""The ``homevisits`` command: argparse subcommands; every failure becomes one sentence and an exit code.

Exit status: 0 nothing worse than a warning, 1 an error or alert was found, 2 could not check.

Each command is one block: ``add_<name>(sub, common)`` declares it, ``run_<name>(args)`` does it,
and one line in ``COMMANDS`` registers it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .errors import HomevisitsError

DEBUG_ENV = "HOMEVISITS_DEBUG"


def common_options() -> argparse.ArgumentParser:
    """The options every command takes."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("where and when")
    group.add_argument(
        "--config", metavar="FILE", help="settings file (default: ./homevisits.toml or $HOMEVISITS_CONFIG)"
    )
    group.add_argument(
        "--source", metavar="PATH|URL", help="the log: an .xlsx workbook, or a Google Sheet URL or key"
    )
    group.add_argument(
        "--worksheet", metavar="NAME", help="worksheet (tab) name (default: from the config, else the first)"
    )
    group.add_argument(
        "--policy", metavar="NAME|PATH", help="policy profile: a name in policies/ or a .toml file"
    )
    group.add_argument("--now", metavar="ISO", help="check as if it were this time, e.g. 2026-11-23T09:00")
    return common


def settings(args: argparse.Namespace):
    """The config with command-line overrides applied, and the moment of the check."""
    from zoneinfo import ZoneInfo

    from .config import load_config
    from .pipeline import apply_overrides, parse_now

    config = apply_overrides(
        load_config(args.config), source=args.source, worksheet=args.worksheet, policy=args.policy
    )
    return config, parse_now(args.now, ZoneInfo(config.timezone))


def write_output(text: str, output: str | None) -> None:
    """Print, or write to a file atomically (a half-written report never replaces a good one)."""
    if not output or output == "-":
        sys.stdout.write(text)
        return
    path = Path(output).expanduser()
    if str(path) == os.devnull:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".homevisits-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    print(f"Wrote {path}", file=sys.stderr)


# ---------------------------------------------------------------- validate


def add_validate(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "validate",
        parents=[common],
        help="check every visit against the school's policy",
        description="Check every row of the home-visits log against the school's policy and list what to fix.",
    )
    parser.add_argument(
        "--format",
        choices=("text", "json", "html"),
        help="text (default on a terminal), json (default otherwise) or html",
    )
    parser.add_argument("--output", metavar="FILE", help="write the report to FILE instead of the screen")
    parser.set_defaults(run=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    from .findings import exit_status, to_json, to_text
    from .pipeline import load

    config, now = settings(args)
    checked = load(config, now)
    report = checked.report()
    fmt = args.format or ("text" if sys.stdout.isatty() and not args.output else "json")
    if fmt == "text":
        text = to_text(report)
    elif fmt == "json":
        text = to_json(report)
    else:
        from .reports import validation_page
        from .rules import rule_titles

        text = validation_page(report, visits=checked.visits, rule_titles=rule_titles())
    write_output(text, args.output)
    return exit_status(report.findings)


COMMANDS: list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = [
    add_validate,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="homevisits",
        description="Keeps home visits to pupils safe and within the school's policy.",
        epilog="Exit status: 0 all clear (warnings at most), 1 errors or alerts found, 2 could not check.",
    )
    parser.add_argument("--version", action="version", version=f"homevisits {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    common = common_options()
    for add in COMMANDS:
        add(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except HomevisitsError as exc:
        print(f"homevisits: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("homevisits: stopped.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        print(
            f"homevisits: stopped on an unexpected problem ({type(exc).__name__}: {str(exc)[:200]}); "
            f"run again with {DEBUG_ENV}=1 to see the details, and report it.",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
