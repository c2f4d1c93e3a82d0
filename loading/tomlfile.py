"""Reading a TOML file of ours (scenario, settings, trial): one place says what went wrong."""

from __future__ import annotations

import tomllib
from pathlib import Path


class TomlFileError(ValueError):
    """The file could not be read or is not TOML; the message says which, for a person."""


def read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TomlFileError(f"cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise TomlFileError("is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise TomlFileError(f"not valid TOML ({exc})") from None
