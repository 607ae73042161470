"""The `pyemu` command line (../shared/design/cli.md): QEMU's option names, one-line errors.

Every failure a user can cause (a missing file, malformed hex, an unknown option) ends in one line
`pyemu: error: ...` on stderr and exit status 1, never a Python traceback.
"""

from __future__ import annotations

import argparse
import sys

EXIT_ERROR = 1


class UsageError(Exception):
    """A mistake in what the user asked for; reported as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting with status 2."""

    def error(self, message: str):  # noqa: D401 - argparse's name
        raise UsageError(message)


def _int_auto(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def build_parser() -> _Parser:
    parser = _Parser(prog="pyemu", description="A PC emulator that runs x86 code as compiled blocks.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    dis = sub.add_parser("disasm", help="disassemble x86 code")
    dis.add_argument("--bits", type=int, choices=(16, 32), default=32, help="code size (default 32)")
    dis.add_argument("--org", type=_int_auto, default=0, help="address of the first byte")
    src = dis.add_mutually_exclusive_group(required=True)
    src.add_argument("file", nargs="?", help="a file of raw code")
    src.add_argument("--hex", help="the code as hex digits (spaces allowed)")
    src.add_argument("--sample", action="store_true", help="the built-in sample program")
    return parser


def _cmd_disasm(args) -> int:
    from emu.translate import disasm

    if args.hex is not None:
        text = "".join(args.hex.split())
        if len(text) % 2:
            raise UsageError("--hex: odd number of hex digits")
        try:
            code = bytes.fromhex(text)
        except ValueError:
            raise UsageError("--hex: not hex digits") from None
    elif args.sample:
        code = disasm.sample_code(args.bits)
    else:
        try:
            with open(args.file, "rb") as fh:
                code = fh.read()
        except OSError as exc:
            raise UsageError(f"{args.file}: {exc.strerror or exc}") from None
    out = sys.stdout
    for line in disasm.disassemble_lines(code, bits=args.bits, org=args.org):
        out.write(line + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        if args.command == "disasm":
            return _cmd_disasm(args)
        raise UsageError("a command is needed: pyemu disasm ... (see pyemu --help)")
    except UsageError as exc:
        print(f"pyemu: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("pyemu: interrupted", file=sys.stderr)
        return 130
