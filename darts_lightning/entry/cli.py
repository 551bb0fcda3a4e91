"""The ``darts-lightning`` command line, built on LightningCLI.

``darts-lightning fit --config configs/darts_digits.yaml`` runs a search; every option of the model, data
and trainer can be overridden, a part's arguments under its name (``--model.init_args.arch_optimizer.init_args.lr
3e-3``, short ``--model.arch_optimizer.lr 3e-3``; ``--model.space.channels 4``, ``--data.init_args.batch_size 32``,
``--trainer.max_epochs 5``) and ``--print_config`` shows the complete configuration.
``darts-lightning export-genotype CKPT`` writes the answer (genotype) of a search checkpoint.
``darts-lightning convert-checkpoint OLD NEW`` converts a search checkpoint of an earlier version (flat model
settings) to today's form (see :mod:`darts_lightning.entry.convert`).
``darts-lightning protocol`` runs the DARTS evaluation protocol (several searches, selection, final
evaluation over several seeds; see :mod:`darts_lightning.entry.protocol`).

Two settings of the command line itself: ``--threads N`` sets torch's intra-op threads in every process of
the run (see :class:`darts_lightning.utils.threads.TorchThreads`), and ``--verbose`` shows the traceback of an
error, which is otherwise reported in one line (see :func:`main`).

``--ckpt_path`` resumes *the configured run*: unlike plain LightningCLI, the checkpoint's saved
hyperparameters never replace the configuration; a checkpoint written by a different run is refused
(:func:`darts_lightning.utils.resume.check_resume`).
"""

from __future__ import annotations

import errno
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence

from darts_lightning.entry.convert import convert_main
from darts_lightning.entry.export import export_main
from darts_lightning.entry.profile import profile_main
from darts_lightning.entry.protocol import protocol_main
from darts_lightning.entry.runner import PROGRAM, DartsLightningCLI, run_cli

__all__ = ["DartsLightningCLI", "main", "run_cli", "run_command", "error_line"]

def run_command(args: Sequence[str] | None = None) -> None:
    """``darts-lightning {fit,validate,test,predict,export-genotype,convert-checkpoint,protocol,profile} ...``, raising
    its errors."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] == "export-genotype":
        raise SystemExit(export_main(argv[1:]))
    if argv and argv[0] == "convert-checkpoint":
        raise SystemExit(convert_main(argv[1:]))
    if argv and argv[0] == "protocol":
        raise SystemExit(protocol_main(argv[1:]))
    if argv and argv[0] == "profile":
        raise SystemExit(profile_main(argv[1:]))
    run_cli(argv)


def main(args: Sequence[str] | None = None) -> int:
    """The console script; returns the exit status. A mistake in the input (a bad value, a missing or
    unreadable file, a full disk, a diverged search) ends with one line on stderr that names the problem and
    the fix, and exit status 2;
    ``--verbose`` (anywhere on the command line) or ``DARTS_LIGHTNING_VERBOSE=1`` shows the traceback too.
    Anything else is a bug and shows its traceback."""
    argv = list(sys.argv[1:] if args is None else args)
    verbose = "--verbose" in argv or os.environ.get("DARTS_LIGHTNING_VERBOSE", "") not in ("", "0")
    argv = [a for a in argv if a != "--verbose"]
    subcommand = argv[0] if argv and not argv[0].startswith("-") else "<subcommand>"
    return _report_errors(lambda: run_command(argv), verbose, subcommand)


def _report_errors(command: Callable[[], None], verbose: bool, subcommand: str) -> int:
    try:
        command()
    except SystemExit:
        raise
    except Exception as error:  # sorted into the user's mistakes and bugs below
        line = error_line(error, subcommand)
        if line is None:
            raise
        if verbose:
            traceback.print_exc()
        hint = "" if verbose or type(error).__name__ == "ArgumentError" else " (--verbose shows the traceback)"
        print(f"{PROGRAM}: error: {line}{hint}", file=sys.stderr)
        return 2
    return 0


_OS_ERROR_FIXES = {
    errno.ENOSPC: "free some space or write elsewhere (--trainer.default_root_dir)",
    errno.EDQUOT: "free some space or write elsewhere (--trainer.default_root_dir)",
    errno.EACCES: "choose a folder you can write to (--trainer.default_root_dir) or fix its permissions",
    errno.EPERM: "choose a folder you can write to (--trainer.default_root_dir) or fix its permissions",
    errno.EROFS: "choose a writable folder (--trainer.default_root_dir)",
    errno.ENOTDIR: "a file stands where a folder is needed: choose another path",
    errno.EEXIST: "a file stands where a folder is needed: choose another path",
}


def error_line(error: BaseException, subcommand: str = "<subcommand>") -> str | None:
    """The one-line report of a mistake in the user's input, or ``None`` for an error that is a bug.

    The user's mistakes are the project's ``ValueError``s (bad values, unknown names, mismatched
    checkpoints, bad genotypes), file-system errors (``OSError``), a diverged search
    (``FloatingPointError``) and a command line that does not parse. jsonargparse wraps an error raised
    while building the model or the data in its own report of the class's union type: the original error
    is its cause, and that is what is reported.
    """
    from jsonargparse import ArgumentError

    if isinstance(error, ArgumentError):
        return _argument_error_line(str(error), subcommand)
    if not isinstance(error, (ValueError, OSError, FloatingPointError)):
        return None
    while isinstance(error, ValueError) and isinstance(error.__cause__, Exception) and _from_jsonargparse(error):
        error = error.__cause__
    if not isinstance(error, (ValueError, OSError, FloatingPointError)):
        return None
    if isinstance(error, OSError) and error.errno is not None and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        fix = _OS_ERROR_FIXES.get(error.errno)
        return f"{error.strerror}{where}" + (f"; {fix}" if fix else "")
    return " ".join(str(error).split()) or type(error).__name__


def _from_jsonargparse(error: BaseException) -> bool:
    return str(error).startswith(("Does not validate against any of", "Problem with given class_path"))


def _argument_error_line(message: str, subcommand: str = "<subcommand>") -> str:
    """jsonargparse's nested report of a value that does not parse, reduced to ``key: problem``.

    Where a value chose a class (``class_path``), the other alternatives of its union (``expected str``, ``expected
    NoneType``) are not what the user meant: only the chosen class's problem is reported."""
    keys: list[str] = []
    problems: list[str] = []
    given = None
    chose_class = "Problem with given class_path" in message
    for raw in message.splitlines():
        text = raw.strip().lstrip("-").strip()
        key = re.match(r'Parser key "([^"]+)":?\s*', text)
        if key:
            keys.append(key.group(1))
            text = text[key.end():]
        if not text:
            continue
        if chose_class and re.fullmatch(r"Expected an? <class '[\w.]+'>", text):
            continue
        if text.startswith("Given value:"):
            value = text.split(":", 1)[1].strip()
            if not value.startswith(("Namespace(", "NestedArg(")):
                given = value
        elif not text.startswith(
            ("Does not validate", "Subtypes:", "Errors:", "Given value type", "Problem with given class_path",
             "Expected a <class 'NoneType'>")
        ):
            text = re.sub(r"Expected an? <class '([\w.]+)'>", r"expected \1", text)
            problems.append(re.sub(r"<class '([\w.]+)'>", r"\1", text).replace(". Got value:", ", got"))
    if not problems:
        return " ".join(message.split())
    problem = "; ".join(dict.fromkeys(problems))
    if given is not None and ", got" not in problem:
        problem += f", got {given!r}"
    where = ".".join(keys)
    return (f"{where}: " if where else "") + problem + f" (see {PROGRAM} {subcommand} --help)"


if __name__ == "__main__":
    raise SystemExit(main())
