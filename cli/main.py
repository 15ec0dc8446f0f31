"""The `charlm` command line: the pipeline's operations run from a terminal, no Prefect server.

Each command (cli/commands.py) calls the same operation the Prefect flows call (tasks/).
Results go to stdout (the id or path as the last line; JSON for `evaluate`), progress and
messages to stderr. Usage errors exit 2, runtime errors exit 1, each with one line
`charlm: <command>: <cause>` (storage.one_line; `--debug` shows the traceback). Run as the
`charlm` program, the process's stderr is filtered so that TensorFlow's native start-up
chatter never reaches the user (unless `--debug`; see tasks/native_logs.py).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence


class StderrHandler(logging.Handler):
    """Log records as plain lines on whatever sys.stderr is at the time of the call."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr, flush=True)


def _setup_logging() -> None:
    logger = logging.getLogger("charlm")
    logger.setLevel(logging.INFO)
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        logger.addHandler(StderrHandler())
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status.

    Called without `argv` (the `charlm` program), it owns the process: TensorFlow's native
    log lines are filtered out of stderr before anything imports TensorFlow. Called with
    `argv` (tests, embedding), it leaves the process's file descriptors alone.
    """
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    if argv is None and not debug:
        from tasks.native_logs import filter_native_logs

        filter_native_logs()
    from cli.commands import COMMANDS, err
    from cli.parser import UsageError, build_parser
    from storage import one_line

    _setup_logging()
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        err(str(e))
        return 2
    try:
        run = COMMANDS[args.command](args)  # validates arguments into configs
    except ValueError as e:
        err(one_line(args.command, e))
        return 2
    try:
        run()
    except KeyboardInterrupt:
        err(one_line(args.command, "interrupted"))
        return 130
    except Exception as e:  # one line for users; --debug shows the traceback
        if debug:
            raise
        err(one_line(args.command, e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
