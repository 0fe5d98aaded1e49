"""Type-check every Python example of README.md and docs/*.md with mypy --strict.

    .venv/bin/python scripts/check_docs.py              # README.md and docs/*.md
    .venv/bin/python scripts/check_docs.py docs/loops.md

`scripts/check` runs it. Each ```python block is a program of its own, written to a file
of its own: it must bring its imports, and whatever it calls must exist and be called
as declared. The blocks of one document are checked together, in one mypy run, so that
a block can import a module an earlier (or later) block of the page shows: a block whose
first line is a comment naming a file (`# myapp/db.py`) is written to that path.
Errors name the markdown file and line.

A block that is deliberately not a complete program says so on the line above it, with
its reason (the comment does not show on the rendered page):

    <!-- check_docs: skip, the part of a config that changes -->

Checked as Python 3.10, with the project's mypy settings otherwise: pytest 9, which the
testing examples use, does not parse as 3.9.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON_VERSION = "3.10"

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_SKIP = re.compile(r"^\s*<!--\s*check_docs:\s*(?P<directive>.*?)\s*-->\s*$")
_FILE_NAME = re.compile(r"^#\s*(?P<path>[\w./-]+\.py)\s*$")
# "file.py:12: error: ..." (and ": note:"), as mypy reports without column numbers.
_MYPY_LINE = re.compile(r"^(?P<path>[^:\n]+\.pyi?):(?P<line>\d+):(?P<rest> .*)$")


class DocumentError(Exception):
    """A markdown file that cannot be checked as it is (a bad marker, say)."""


@dataclasses.dataclass(frozen=True)
class Block:
    """One ```python block: where it starts in its document and the file it becomes."""

    document: Path
    # The line of the opening fence (1-based): the block's line n is the document's
    # line `fence_line + n`.
    fence_line: int
    code: str
    file_name: str


def documents() -> list[Path]:
    """README.md and every docs/*.md, in a stable order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(document: Path) -> tuple[list[Block], int]:
    """The document's Python blocks to check, and how many it opts out."""
    lines = document.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    skipped = 0
    named: set[str] = set()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        language = opening["info"].split()[0].lower() if opening["info"].split() else ""
        end = index + 1
        while end < len(lines) and not _closes(lines[end], fence):
            end += 1
        if end == len(lines):
            raise DocumentError(f"{_where(document, index + 1)}: this code block is never closed")
        if language in ("python", "py"):
            if _skip_reason(document, lines, index) is not None:
                skipped += 1
            else:
                code = "".join(line[indent:] + "\n" for line in lines[index + 1 : end])
                file_name = _file_name(document, index + 1, code, named)
                blocks.append(Block(document, index + 1, code, file_name))
        index = end + 1
    return blocks, skipped


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence) and stripped == stripped[0] * len(stripped)


def _skip_reason(document: Path, lines: Sequence[str], fence_index: int) -> str | None:
    """The reason given above the block for not checking it, or None: check it."""
    if fence_index == 0:
        return None
    marker = _SKIP.match(lines[fence_index - 1])
    if marker is None:
        return None
    directive = marker["directive"]
    keyword, _, reason = directive.partition(",")
    if keyword.strip() != "skip" or not reason.strip():
        raise DocumentError(
            f"{_where(document, fence_index)}: write the marker as "
            f"'<!-- check_docs: skip, <why this block is not a complete program> -->', "
            f"not {lines[fence_index - 1].strip()!r}"
        )
    return reason.strip()


def _file_name(document: Path, fence_line: int, code: str, named: set[str]) -> str:
    """The path the block is written to: the one its first line names, else its own."""
    first_line = code.split("\n", 1)[0]
    match = _FILE_NAME.match(first_line)
    if match is None:
        return f"block_line_{fence_line + 1}.py"
    path = match["path"]
    if path.startswith("/") or ".." in Path(path).parts:
        raise DocumentError(
            f"{_where(document, fence_line + 1)}: name the block's file by a relative path "
            f"without '..', not {path!r}"
        )
    if path in named:
        raise DocumentError(
            f"{_where(document, fence_line + 1)}: another block of this page is {path} "
            "already; name each file once"
        )
    named.add(path)
    return path


def _where(document: Path, line: int) -> str:
    return f"{_display(document)}:{line}"


def _display(document: Path) -> str:
    try:
        return str(document.relative_to(ROOT))
    except ValueError:
        return str(document)


def check(document: Path, blocks: Sequence[Block], work: Path, library: Path) -> list[str]:
    """mypy's complaints about the document's blocks, each at its markdown line."""
    from mypy import api

    folder = work / re.sub(r"\W", "_", _display(document))
    folder.mkdir(parents=True, exist_ok=True)
    by_file: dict[str, Block] = {}
    for block in blocks:
        path = folder / block.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.code, encoding="utf-8")
        by_file[block.file_name] = block
    arguments = [
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--strict",
        "--python-version",
        PYTHON_VERSION,
        "--cache-dir",
        str(Path(sys.prefix) / ".mypy_cache_docs"),
        # Module names from the folder: `myapp/db.py` is `myapp.db`.
        "--explicit-package-bases",
        "--no-error-summary",
        "--hide-error-context",
        "--no-pretty",
        *sorted(by_file),
    ]
    previous = os.getcwd(), os.environ.get("MYPYPATH")
    os.chdir(folder)
    os.environ["MYPYPATH"] = str(library)
    try:
        stdout, stderr, status = api.run(arguments)
    finally:
        os.chdir(previous[0])
        if previous[1] is None:
            del os.environ["MYPYPATH"]
        else:
            os.environ["MYPYPATH"] = previous[1]
    if status == 0:
        return []
    complaints = [_at_markdown_line(line, by_file) for line in stdout.splitlines() if line]
    # mypy reports file by file: in the page's order instead (a stable sort keeps each
    # note after its error).
    complaints.sort(key=lambda line: _markdown_line_number(document, line))
    complaints += [line for line in stderr.splitlines() if line]
    return complaints or [f"{_display(document)}: mypy failed (exit status {status})"]


def _at_markdown_line(line: str, by_file: dict[str, Block]) -> str:
    match = _MYPY_LINE.match(line)
    if match is None or match["path"] not in by_file:
        return line
    block = by_file[match["path"]]
    return f"{_where(block.document, block.fence_line + int(match['line']))}:{match['rest']}"


def _markdown_line_number(document: Path, complaint: str) -> int:
    prefix = f"{_display(document)}:"
    if complaint.startswith(prefix):
        number = complaint[len(prefix) :].split(":", 1)[0]
        if number.isdigit():
            return int(number)
    return sys.maxsize


def library_path() -> Path:
    """A folder holding only this checkout's `databases`, for mypy to import.

    The editable install puts an import hook in site-packages, which mypy cannot follow;
    the project root itself would also offer its `tests` package, which a page's
    `tests/conftest.py` example must not meet. Kept in the virtualenv, so that mypy's
    cache stays valid from one run to the next.
    """
    library = Path(sys.prefix) / ".check_docs"
    link = library / "databases"
    if not (link.is_symlink() and link.resolve() == (ROOT / "databases").resolve()):
        shutil.rmtree(library, ignore_errors=True)
        library.mkdir(parents=True)
        link.symlink_to(ROOT / "databases", target_is_directory=True)
    return library


def main(argv: Sequence[str]) -> int:
    targets = [Path(arg).resolve() for arg in argv] or documents()
    library = library_path()
    failures: list[str] = []
    checked = skipped = 0
    with tempfile.TemporaryDirectory(prefix="check_docs.") as work:
        for document in targets:
            try:
                blocks, opted_out = python_blocks(document)
            except DocumentError as error:
                failures.append(str(error))
                continue
            skipped += opted_out
            checked += len(blocks)
            if blocks:
                failures.extend(check(document, blocks, Path(work), library))
    for failure in failures:
        print(failure)
    summary = (
        f"check_docs: {checked} Python blocks in {len(targets)} documents, {skipped} opted out"
    )
    if failures:
        print(f"{summary}: FAILED")
        return 1
    print(f"{summary}: all pass mypy --strict")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
