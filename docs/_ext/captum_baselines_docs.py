"""The docs' own Sphinx extension.

- ``mirror_sources``: copies ``tutorials/*.ipynb`` and the upstream pull
  requests into ``docs/`` (ignored by git) before Sphinx looks for sources,
  so that every notebook becomes a page without editing the docs
  (``tutorials.md`` lists them with a glob); ``link_mirrors`` points the
  pages' links to those repository files at their pages.
- ``.. public-names:: MODULE``: a summary table of the public names of
  ``MODULE`` (its ``__all__``: classes, functions, then data), so that the
  tables follow the code.
- ``.. public-members:: MODULE``: the documentation of those names.
- ``.. cli-help:: [SUBCOMMAND]``: the text of ``captum-baselines [SUBCOMMAND]
  --help`` as a literal block, taken from the parser itself.

Constants are documented by the ``#:`` comment above their definition, also
when a package re-exports them (autodoc alone would show the docstring of
``tuple`` or ``dict`` there).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import os
import re
import shutil
import sys
import types
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.ext.autosummary import Autosummary
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective
from sphinx.util.inspect import object_description

#: Width of the command-line help on the page (argparse reads ``COLUMNS``).
HELP_COLUMNS = 80
#: Longer values of constants are left out of their signature line.
MAX_VALUE_CHARS = 80


#: Repository files that the site shows, mirrored into ``docs/`` at the same
#: relative path (ignored by git): every notebook under ``tutorials/`` becomes
#: a page without editing the docs, and so do the upstream pull requests.
MIRRORED = ("tutorials/*.ipynb", "upstream/*/PR.md", "upstream/*/*.patch")


def mirror_sources(app: Sphinx, config: Config) -> None:
    """Copy the mirrored files that changed; drop the copies of deleted ones."""
    docs = Path(app.srcdir)
    root = docs.parent
    for pattern in MIRRORED:
        wanted = {path.relative_to(root) for path in root.glob(pattern)}
        for stale in docs.glob(pattern):
            if stale.relative_to(docs) not in wanted:
                stale.unlink()
        for relative in wanted:
            copy = docs / relative
            # Unchanged copies keep their mtime: incremental builds skip them.
            if not copy.exists() or copy.read_bytes() != (root / relative).read_bytes():
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / relative, copy)


def link_mirrors(app: Sphinx, doctree: nodes.document) -> None:
    """Point the pages' links to repository files at what the site has.

    ``docs/upstream.md`` links ``../upstream/trapezoid/PR.md`` (right on a
    repository browser); on the site that is the page ``upstream/trapezoid/PR``.
    A link to a Markdown file that is no page (``../README.md``) becomes a
    download of that file, as MyST makes links to other files. A link to a file
    that does not exist stays a warning.
    """
    docs = Path(app.srcdir)
    root = docs.parent
    for node in list(doctree.findall(addnodes.pending_xref)):
        if node.get("reftype") != "myst" or node.get("refdomain") != "doc":
            continue
        target = node["reftarget"]
        if target in app.env.found_docs:
            continue
        path = Path(os.path.normpath(docs / target))
        if not path.is_relative_to(root):
            continue
        mirrored = path.relative_to(root).as_posix()
        if mirrored in app.env.found_docs:
            node["reftarget"] = mirrored
            continue
        for suffix in app.config.source_suffix:
            file = path.with_name(path.name + suffix)
            if file.is_file():
                download = addnodes.download_reference(
                    "",
                    "",
                    *node.children,
                    refdoc=node["refdoc"],
                    reftarget=os.path.relpath(
                        file, (docs / node["refdoc"]).parent
                    ).replace(os.sep, "/"),
                    refexplicit=node.get("refexplicit", False),
                    reftype="myst",
                    refdomain=None,
                )
                node.replace_self(download)
                break


def public_names(module: types.ModuleType) -> list[str]:
    """``module.__all__`` without submodules, or else the public classes and
    functions it defines (what ``automodule`` with ``:members:`` documents)."""
    if hasattr(module, "__all__"):
        return [
            name
            for name in module.__all__
            if not name.startswith("__")
            and not isinstance(getattr(module, name), types.ModuleType)
        ]
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == module.__name__
    ]


def kind(obj: object) -> str:
    """``"class"``, ``"function"`` or ``"data"`` (constants, type aliases)."""
    if inspect.isclass(obj):
        return "class"
    if inspect.isroutine(obj):
        return "function"
    return "data"


def comment(module: types.ModuleType, name: str) -> list[str]:
    """The ``#:`` comment of ``module.name``, from ``module`` or, for a
    package that re-exports it, from the submodule that defines it."""
    obj = getattr(module, name)
    candidates = [module.__name__] + sorted(
        sub_name
        for sub_name, sub in sys.modules.items()
        if sub_name.startswith(module.__name__ + ".")
        and getattr(sub, name, None) is obj
    )
    for candidate in candidates:
        doc = ModuleAnalyzer.for_module(candidate).find_attr_docs().get(("", name))
        if doc:
            return list(doc)
    return []


def first_sentence(lines: list[str]) -> str:
    """Up to the first full stop followed by a capital ("Fig. 2" goes on)."""
    text = " ".join(line.strip() for line in lines).strip()
    end = re.search(r"\.\s+(?=[A-Z])", text)
    return text if end is None else text[: end.start() + 1]


def by_kind(module: types.ModuleType) -> list[str]:
    """The public names of ``module``: classes, functions, then data, each in
    the order of ``__all__``."""
    names = public_names(module)
    order = {"class": 0, "function": 1, "data": 2}
    return sorted(names, key=lambda name: order[kind(getattr(module, name))])


def home(package: types.ModuleType, name: str) -> str:
    """The first public submodule of ``package`` (in its ``__all__``) that
    documents ``name`` too."""
    for sub_name in package.__all__:
        sub = getattr(package, sub_name)
        if isinstance(sub, types.ModuleType) and name in public_names(sub):
            return sub_name
    raise ValueError(f"no public submodule of {package.__name__} documents {name}")


class PublicNames(Autosummary):
    """An autosummary table of the public names of ``MODULE``.

    With ``:homes:``, each name links to the module that documents it
    (``captum_baselines.ExpectedGradients`` to ``captum_baselines.attr``):
    the package root re-exports names whose pages are their modules'.
    """

    required_arguments = 1
    has_content = False
    option_spec = {"homes": directives.flag}

    def run(self) -> list[nodes.Node]:
        module = importlib.import_module(self.arguments[0])
        homes = "homes" in dict(self.options)
        entries = []
        for name in by_kind(module):
            # Relative to the current module (autosummary's rule); with
            # ``:homes:``, through the submodule that documents the name.
            entries.append(f"~{home(module, name)}.{name}" if homes else name)
        self.content = StringList(entries, source=self.get_source_info()[0])
        self.options = {"nosignatures": True}
        return super().run()

    def get_items(self, names: list[str]) -> list[tuple[str, str | None, str, str]]:
        items = super().get_items(names)
        for i, (display, signature, _, real_name) in enumerate(items):
            module_name, _, name = real_name.rpartition(".")
            module = sys.modules.get(module_name)
            if module is not None and kind(getattr(module, name, None)) == "data":
                summary = first_sentence(comment(module, name))
                items[i] = (display, signature, summary, real_name)
        return items


class PublicMembers(SphinxDirective):
    """The documentation of every public name of ``MODULE``: classes, then
    functions, then data, each in the order of ``__all__``."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module = importlib.import_module(self.arguments[0])
        blocks = []
        for name in by_kind(module):
            obj = getattr(module, name)
            what = kind(obj)
            if what == "class":
                lines = [f".. autoclass:: {module.__name__}.{name}"]
                if obj.__bases__ != (object,):  # no "Bases: object" line
                    lines.append("   :show-inheritance:")
                blocks.append("\n".join(lines))
            elif what == "function":
                blocks.append(f".. autofunction:: {module.__name__}.{name}")
            else:
                lines = [f".. py:data:: {name}"]
                value = object_description(obj)
                if len(value) <= MAX_VALUE_CHARS:
                    lines.append(f"   :value: {value}")
                lines.append("")
                lines += [f"   {line}" for line in comment(module, name)]
                blocks.append("\n".join(lines))
        text = "\n\n".join(blocks)
        return self.parse_text_to_nodes(text)


class CliHelp(SphinxDirective):
    """``captum-baselines [SUBCOMMAND] --help``, as the user sees it."""

    optional_arguments = 1

    def run(self) -> list[nodes.Node]:
        from captum_baselines.cli import build_parser

        out = io.StringIO()
        # A fixed width, and no colors (argparse colors its help from 3.14).
        env = {"COLUMNS": str(HELP_COLUMNS), "NO_COLOR": "1"}
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
                build_parser().parse_args([*self.arguments, "--help"])
        finally:
            for key, value in saved.items():
                if value is None:
                    del os.environ[key]
                else:
                    os.environ[key] = value
        text = out.getvalue().rstrip()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", mirror_sources)
    # Before Sphinx's collectors, which register the downloads.
    app.connect("doctree-read", link_mirrors, priority=400)
    app.add_directive("public-names", PublicNames)
    app.add_directive("public-members", PublicMembers)
    app.add_directive("cli-help", CliHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
