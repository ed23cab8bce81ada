"""The error types preftune raises, and the exit code each maps to.

Exit codes (documented in docs/errors.md):

    0 ok · 1 training failed · 2 usage or configuration · 3 invalid data
    4 model or dependency missing · 5 out of memory · 143 stopped by SIGTERM (checkpoint saved)

Every error carries a one-line message (what is wrong and where) and hints (what to do
next). The CLI prints them as ``error:`` and ``hint:`` lines; library users catch
``PreftuneError``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    TRAINING_FAILED = 1
    USAGE = 2
    INVALID_DATA = 3
    MISSING = 4
    OUT_OF_MEMORY = 5
    STOPPED = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended


class PreftuneError(Exception):
    """Base class: a message for people, hints, and the exit code the CLI returns."""

    exit_code: ExitCode = ExitCode.TRAINING_FAILED

    def __init__(self, message: str, hints: list[str] | tuple[str, ...] = (),
                 details: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hints = list(hints)
        # Extra lines printed between the error and the hints (e.g. a list of problems).
        self.details = list(details)


class UsageError(PreftuneError):
    """A bad command line, path or option value."""

    exit_code = ExitCode.USAGE


class ConfigError(PreftuneError):
    """A configuration value that does not validate."""

    exit_code = ExitCode.USAGE


class DataError(PreftuneError):
    """A dataset that cannot be read or does not validate."""

    exit_code = ExitCode.INVALID_DATA


class MissingError(PreftuneError):
    """A model, tokenizer or optional dependency that cannot be found."""

    exit_code = ExitCode.MISSING


class TrainingError(PreftuneError):
    """Training started but could not finish (NaN loss, crash in the loop)."""

    exit_code = ExitCode.TRAINING_FAILED


class OutOfMemoryError(PreftuneError):
    """The device ran out of memory."""

    exit_code = ExitCode.OUT_OF_MEMORY


class StoppedError(PreftuneError):
    """Training stopped on request (SIGTERM) after saving a checkpoint to resume from."""

    exit_code = ExitCode.STOPPED


class GraderError(ConfigError):
    """A grader that does not validate, or that could not score a sample.

    A configuration error (exit code 2): the grader and the data it reads are the user's input.
    """
