"""The files a prediction run reads: one image, a folder or a glob; unreadable files are listed, not fatal
(unless no file can be read: then there is nothing to predict).

Both prediction commands (a checkpoint through Lightning, an exported model through OpenVINO) list
their inputs here and describe a file that cannot be read in the same words, so their reports agree.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import UnidentifiedImageError

from otx_anomaly.errors import DatasetError, UnreadableImageError
from otx_anomaly.io.images import IMAGE_EXTENSIONS, open_image

_GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class UnreadableInput:
    """An input file that was skipped, and why."""

    path: str
    reason: str


def resolve_inputs(source: str | Path) -> list[Path]:
    """The files ``source`` names, sorted: an image file; the files directly in a folder (hidden
    ones excepted; subfolders need a glob); or the files a glob matches (``**`` recurses).

    Every file is returned, images or not: :func:`read_problem` says which cannot be read.
    """
    text = os.path.expanduser(str(source))
    path = Path(text)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            hint = (f" It has subfolders: use a glob such as '{path / '**' / '*.png'}' (quoted)."
                    if any(p.is_dir() for p in path.iterdir()) else "")
            raise DatasetError(f"Folder {text!r} holds no files to predict on.{hint}")
        return files
    if any(character in text for character in _GLOB_CHARACTERS):
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if os.path.isfile(p))
        if not matches:
            raise DatasetError(f"No file matches {text!r}. Check the pattern; quote it so that the shell "
                               "does not expand it.")
        return matches
    raise DatasetError(f"{text!r} does not exist: give an image file, a folder of images or a quoted glob "
                       "such as 'images/**/*.png'.")


def describe_unreadable(error: UnreadableImageError) -> str:
    """Why a file cannot be read, in words a person can act on."""
    if error.reason != "empty file" and isinstance(error.__cause__, UnidentifiedImageError):
        return "not an image (Pillow cannot identify its format)"
    return error.reason


def read_problem(path: str | Path) -> UnreadableInput | None:
    """Decode ``path`` as prediction will; ``None`` if it can be read, else the reason it cannot."""
    try:
        open_image(path)
    except UnreadableImageError as error:
        return UnreadableInput(str(path), describe_unreadable(error))
    return None


def nothing_readable(source: str | Path, unreadable: list[UnreadableInput]) -> DatasetError:
    """The error for an input none of whose files can be read: there is nothing to predict."""
    listed = "; ".join(f"{p.path} ({p.reason})" for p in unreadable[:5]) + (" ..." if len(unreadable) > 5 else "")
    return DatasetError(f"None of the {len(unreadable)} file(s) of {str(source)!r} can be read: {listed}. "
                        f"Give image files ({', '.join(IMAGE_EXTENSIONS)}).")


def split_readable(paths: Iterable[Path]) -> tuple[list[Path], list[UnreadableInput]]:
    """``paths`` that decode, and the others with their reasons (each file is decoded once)."""
    readable, unreadable = [], []
    for path in paths:
        problem = read_problem(path)
        if problem is None:
            readable.append(path)
        else:
            unreadable.append(problem)
    return readable, unreadable
