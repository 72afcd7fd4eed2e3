"""User-facing errors: the CLI prints them as one line and exits non-zero, never a traceback."""

from __future__ import annotations

from pathlib import Path


class SimCSEError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""


class ConfigError(SimCSEError):
    """Unknown config key, bad value or invalid combination of options."""


class DataError(SimCSEError):
    """A data file is missing, empty or malformed."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


class MissingDataError(DataError):
    """A needed data file is absent and could not be downloaded."""

    def __init__(self, path: str | Path, fetch_command: str, reason: str = "not found"):
        super().__init__(path, f"{reason}; fetch it with: {fetch_command}")
        self.fetch_command = fetch_command


class IndexModelError(SimCSEError):
    """An index was built by another model than the one loading it (or its model is unknown). ``override``
    says how to load it anyway, in the words of the caller (Python: ``check_model=False``)."""

    def __init__(self, problem: str, override: str = "pass check_model=False"):
        super().__init__(f"{problem}; {override}")
        self.problem = problem


class TrainingError(SimCSEError):
    """Training had to stop (non-finite loss, failed write); the last good checkpoint is kept."""


def shorten(text: str, limit: int = 120) -> str:
    """One line of at most ``limit`` characters (for quoting user input in an error)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
