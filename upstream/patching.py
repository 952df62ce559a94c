"""Apply the upstream patches to a copy of the installed Captum package.

Each patch is ``git diff`` output against Captum 0.9.0: the library under
``captum/`` and Captum's own tests under ``tests/``. Only the package is
installed, so only its ``captum/`` sections can be applied here; in a Captum
checkout, ``git apply upstream/<name>/<name>.patch`` applies everything.

``python -m upstream.patching DEST`` writes ``DEST/captum`` with every patch
applied; put ``DEST`` first on ``PYTHONPATH`` to import the patched copy.

The application is strict (no fuzz, no offset): a patch whose context no longer
matches the installed Captum raises :class:`PatchError`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
PATCHES = {
    name: HERE / name / f"{name}.patch"
    for name in ("trapezoid", "gradient_shap_batching")
}

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class PatchError(RuntimeError):
    """A patch does not apply to the files it targets."""


def _file_sections(diff: str) -> list[tuple[str, str, list[str]]]:
    # (old path, new path, hunk lines) for every file of a git-style diff
    sections: list[tuple[str, str, list[str]]] = []
    in_header, old = False, ""
    for line in diff.splitlines(keepends=True):
        if line.startswith("diff --git "):
            in_header, old = True, ""
        elif in_header and line.startswith("--- "):
            old = line[4:].strip()
        elif in_header and line.startswith("+++ "):
            sections.append((old, line[4:].strip(), []))
            in_header = False
        elif not in_header and sections:
            sections[-1][2].append(line)
    return sections


def _apply_hunks(original: list[str], hunk_lines: list[str], path: str) -> list[str]:
    patched: list[str] = []
    position = 0
    i = 0
    while i < len(hunk_lines):
        header = _HUNK.match(hunk_lines[i])
        if header is None:
            raise PatchError(f"{path}: expected a hunk header, got {hunk_lines[i]!r}")
        old_length = int(header.group(2) or 1)
        # a hunk that only adds lines names the line it follows
        start = int(header.group(1)) - (1 if old_length else 0)
        if start < position:
            raise PatchError(f"{path}: hunks overlap at line {start + 1}")
        patched.extend(original[position:start])
        position = start
        consumed = 0
        i += 1
        while i < len(hunk_lines) and not hunk_lines[i].startswith("@@"):
            tag, text = hunk_lines[i][0], hunk_lines[i][1:]
            if tag == "\\":
                raise PatchError(f"{path}: files without a final newline unsupported")
            if tag in " -":
                if position >= len(original) or original[position] != text:
                    raise PatchError(
                        f"{path}: hunk at line {start + 1} does not match line "
                        f"{position + 1} ({text.rstrip()!r})"
                    )
                position += 1
                consumed += 1
            if tag in " +":
                patched.append(text)
            i += 1
        if consumed != old_length:
            raise PatchError(f"{path}: hunk at line {start + 1} is truncated")
    return patched + original[position:]


def apply_patch(diff: str, root: Path, prefix: str = "captum/") -> list[str]:
    """Applies the sections of ``diff`` whose path starts with ``prefix``.

    Paths are relative to ``root`` (git's ``a/``/``b/`` prefixes stripped).
    Returns the paths patched; raises :class:`PatchError` if a section's file
    is missing or its context does not match.
    """
    applied = []
    for old, new, hunks in _file_sections(diff):
        path = new.removeprefix("b/")
        if not path.startswith(prefix):
            continue
        if new == "/dev/null":
            raise PatchError(f"{old}: deleting files is unsupported")
        target = root / path
        if old == "/dev/null":
            original: list[str] = []
        elif target.is_file():
            original = target.read_text().splitlines(keepends=True)
        else:
            raise PatchError(f"{path}: no such file under {root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(_apply_hunks(original, hunks, path)))
        applied.append(path)
    return applied


def patched_captum(dest: Path, patches: Iterable[Path] = PATCHES.values()) -> Path:
    """Copies the installed ``captum`` package into ``dest`` and applies ``patches``.

    Returns ``dest``, the folder to put first on ``PYTHONPATH``.
    """
    dest = Path(dest)
    spec = importlib.util.find_spec("captum")  # without importing it (and torch)
    if spec is None or spec.origin is None:
        raise PatchError("captum is not installed")
    shutil.copytree(
        Path(spec.origin).resolve().parent,
        dest / "captum",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for patch in patches:
        if not apply_patch(Path(patch).read_text(), dest):
            raise PatchError(f"{patch}: no section under captum/")
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="empty folder for the patched copy")
    parser.add_argument(
        "--only", choices=sorted(PATCHES), action="append", help="apply only these"
    )
    args = parser.parse_args(argv)
    names = args.only or list(PATCHES)
    patched_captum(args.dest, [PATCHES[name] for name in names])
    version = importlib.metadata.version("captum")
    print(f"PYTHONPATH={args.dest.resolve()}  (captum {version} + {', '.join(names)})")


if __name__ == "__main__":
    main()
