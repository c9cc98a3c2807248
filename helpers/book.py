"""The course-book (``myst.yml``) validated offline with mystmd, warnings failing.

``python -m helpers.book check`` runs ``myst build --site --strict --ci`` on a copy of the book, which
parses every page and notebook of the table of contents and resolves every cross-reference, link to
a page and image, and fails when mystmd reports any error *or warning* (``--strict`` alone exits 0
on warnings, so the log is read too).

Two things need the network in a real site build, and are replaced in the copy only:

- the HTML theme (``site.template: book-theme``), which mystmd downloads: the copy points
  ``site.template`` at a stub theme folder, so mystmd builds the site *content* (the same parsing and
  reference resolution) and stops before the HTML;
- remote images (the Colab badges), which mystmd downloads into its image cache: the copy seeds the
  cache with a stand-in for each, so their names and extensions resolve. That these URLs exist is
  checked online by the hosted workflow (``.github/workflows/book.yml``, ``myst build --html``).

One known mismatch is removed from the copy's notebooks: jupytext 1.19 records
``metadata.jupytext.default_lexer`` in every ``.ipynb`` it syncs (and writes it back on every sync),
a key mystmd 1.11's page-frontmatter validator does not know ("'jupytext' extra key ignored").
Only that key is dropped; any other frontmatter problem still fails.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from helpers.profiles import REPO_ROOT

MYST_COMMAND = ["myst", "build", "--site", "--strict", "--ci"]
# Not copied: run outputs, node modules, data and generated folders (the book does not use them).
IGNORED = (".git", "_build", "runs", "nltk_data", "node_modules", "vendor", "models", "data",
           "results", "*.egg-info", "__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".whl", ".device")
BOOK_DATA = ("data/README.md",)  # the only files under a data/ folder that the book needs
LOCAL_LINK = re.compile(r"\]\(((?![a-z][a-z0-9+.-]*:|#|/)[^)\s]+)\)")
REMOTE_IMAGE = re.compile(r"!\[[^\]]*\]\((https?://[^)\s]+)\)")
PROBLEM = re.compile(r"^\s*(⚠️|⛔️?)\s*(.*)$")
STUB_THEME = "myst: v1\nkind: site\ntitle: offline stub (helpers/book.py)\n"


@dataclass
class BookReport:
    returncode: int
    problems: list[str] = field(default_factory=list)
    log: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.problems


def toc_files(root: Path = REPO_ROOT) -> list[str]:
    """The files of ``myst.yml``'s table of contents, in order."""
    config = yaml.safe_load((Path(root) / "myst.yml").read_text(encoding="utf-8"))

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                yield entry["file"]
            yield from walk(entry.get("children"))

    return list(walk(config["project"]["toc"]))


def copy_book(root: Path, dest: Path) -> Path:
    """Copy what the book reads (sources, notebooks, READMEs, images) from ``root`` into ``dest``."""
    shutil.copytree(root, dest, ignore=shutil.ignore_patterns(*IGNORED), symlinks=True)
    for name in BOOK_DATA:
        if (root / name).exists():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, dest / name)
    return dest


def prepare_offline(book: Path) -> list[str]:
    """Point the copy's theme at a stub and seed mystmd's image cache; return the remote images."""
    config_path = book / "myst.yml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    stub = book / "_build" / "offline-theme"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "template.yml").write_text(STUB_THEME, encoding="utf-8")
    config.setdefault("site", {})["template"] = str(stub)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    for notebook in book.rglob("*.ipynb"):
        data = json.loads(notebook.read_text(encoding="utf-8"))
        jupytext_meta = data.get("metadata", {}).get("jupytext")
        if isinstance(jupytext_meta, dict) and "default_lexer" in jupytext_meta:
            del jupytext_meta["default_lexer"]
            if not jupytext_meta:
                del data["metadata"]["jupytext"]
            notebook.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    cache = book / "_build" / "site" / "public"
    cache.mkdir(parents=True, exist_ok=True)
    urls: set[str] = set()
    for page in toc_files(book):
        path = book / page
        if path.exists():
            urls.update(REMOTE_IMAGE.findall(path.read_text(encoding="utf-8").replace('\\"', '"')))
    for url in sorted(urls):  # mystmd names a downloaded image by the md5 of its URL
        stem = hashlib.md5(url.encode()).hexdigest()
        (cache / f"{stem}.svg").write_text(
            '<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>', encoding="utf-8")
    return sorted(urls)


def run_myst(book: Path, timeout: float = 600) -> BookReport:
    """Run mystmd's offline build in ``book`` and collect every warning and error it logs."""
    if shutil.which(MYST_COMMAND[0]) is None:
        raise FileNotFoundError("the `myst` command is missing: pip install -c constraints.txt -e '.[dev]' (mystmd)")
    env = {**os.environ, "NO_UPDATE_NOTIFIER": "1", "CI": "1"}
    done = subprocess.run(MYST_COMMAND, cwd=book, capture_output=True, text=True, timeout=timeout, env=env)
    log = done.stdout + done.stderr
    problems = []
    for line in log.splitlines():
        match = PROBLEM.match(line)
        if match and not line.startswith("  - "):
            problems.append(match.group(2).strip())
    return BookReport(done.returncode, problems, log)


def broken_local_links(root: Path = REPO_ROOT) -> list[str]:
    """Links from a toc page to a repository file that does not exist (mystmd leaves them as links)."""
    root = Path(root)
    broken = []
    for page in toc_files(root):
        path = root / page
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        for target in LOCAL_LINK.findall(text.replace('\\"', '"')):
            file = target.split("#", 1)[0]
            if file and not (path.parent / file).exists():
                broken.append(f"{page} links to {target}, which does not exist")
    return broken


LITERALINCLUDE = re.compile(r"^```+\{literalinclude\}[ \t]+(\S+)[ \t]*\n((?:[ \t]*:[\w-]+:.*\n)*)", re.MULTILINE)
OPTION = re.compile(r"^[ \t]*:([\w-]+):[ \t]*(.*?)[ \t]*$", re.MULTILINE)


def literalincludes(page: Path) -> list[tuple[str, dict[str, str]]]:
    """``(path, options)`` of every MyST ``literalinclude`` in ``page`` (a chapter's ``.md`` twin)."""
    text = page.read_text(encoding="utf-8")
    return [(target, dict(OPTION.findall(options))) for target, options in LITERALINCLUDE.findall(text)]


def included_text(source: str, options: dict[str, str]) -> str | None:
    """The part of ``source`` a literalinclude with ``options`` shows, as mystmd selects it (None: a marker is missing)."""
    begin = 0
    if "start-at" in options or "start-after" in options:
        marker = options.get("start-at", options.get("start-after"))
        found = source.find(marker)
        if found < 0:
            return None
        begin = found if "start-at" in options else found + len(marker)
    stop = len(source)
    if "end-before" in options or "end-at" in options:
        marker = options.get("end-before", options.get("end-at"))
        found = source.find(marker, begin)
        if found < 0:
            return None
        stop = found if "end-before" in options else found + len(marker)
    return source[begin:stop]


def _whole_python_object(source: str, text: str) -> str | None:
    """When ``text`` starts with a ``def`` or ``class``, why it is not exactly that object's source (else None)."""
    import ast

    lines = text.lstrip("\n").rstrip().splitlines()
    head = lines[0].strip() if lines else ""
    if not re.match(r"(async\s+)?(def|class)\s", head):
        return None
    first = source[: source.index(text)].count("\n") + 1 + (len(text) - len(text.lstrip("\n")))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.lineno == first:
            expected = node.end_lineno - node.lineno + 1
            return None if len(lines) == expected else (
                f"shows {len(lines)} lines from {node.name}, which has {expected}: the markers no longer frame it")
    return f"starts at line {first}, where no function or class starts"


def selection_problems(path: Path, options: dict[str, str], where: str) -> list[str]:
    """What would make the part of ``path`` that ``options`` select show the wrong code, or none.

    The book shows helper and page source by text markers (``start-at`` or ``start-after``,
    ``end-before`` or ``end-at``, as mystmd's ``literalinclude`` and :func:`show_source` take them);
    it must keep showing what the prose explains when that source changes, so each marker must occur
    exactly once in the file. A selection that starts with a ``def`` or ``class`` must be exactly
    that function or class (what Sphinx's ``:pyobject:`` gives, which mystmd lacks). ``lines`` and
    ``start-line`` are refused: line numbers drift silently when the file above them changes.
    """
    if not path.is_file():
        return [f"{where}: no such file"]
    source = path.read_text(encoding="utf-8")
    drifting = sorted(set(options) & {"lines", "start-line", "end-line", "pyobject"})
    if drifting:
        return [f"{where}: uses :{drifting[0]}:, which mystmd lacks or which drifts when the file "
                "changes; use :start-at: and :end-before: text markers"]
    markers = [options[o] for o in ("start-at", "start-after", "end-before", "end-at") if o in options]
    counts = {marker: source.count(marker) for marker in markers}
    wrong = [f"{where}: marker {marker!r} occurs {count} times, not once" for marker, count in counts.items() if count != 1]
    if wrong:
        return wrong
    text = included_text(source, options)
    if not text or not text.strip():
        return [f"{where}: the markers select nothing (is the end marker before the start?)"]
    if path.suffix == ".py":
        mismatch = _whole_python_object(source, text)
        if mismatch:
            return [f"{where}: {mismatch}"]
    return []


SHOW_SOURCE_OPTIONS = ("start_at", "start_after", "end_before", "end_at")


def show_source_calls(page: Path) -> list[tuple[str, dict[str, str]]]:
    """``(path, options)`` of every ``show_source("path", start_at=...)`` call in ``page``'s code cells.

    Calls given a Python object (``show_source(wikitext.clean_inline)``) are left out: ``inspect``
    finds an object's source, which cannot drift. ``path`` is relative to the repository root.
    """
    import ast

    calls = []
    for cell in re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M):
        # IPython's `!`/`%` lines and cell options are not Python: each becomes `pass`, keeping its indentation
        code = "\n".join(re.sub(r"^(\s*)[%!:].*", r"\1pass", line) for line in cell.splitlines())
        for node in ast.walk(ast.parse(code)):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "show_source"
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                options = {keyword.arg.replace("_", "-"): ast.literal_eval(keyword.value)
                           for keyword in node.keywords if keyword.arg}
                calls.append((node.args[0].value, options))
    return calls


def literalinclude_problems(page: Path) -> list[str]:
    """What would make a ``literalinclude`` or a ``show_source`` call in ``page`` show the wrong code, or none."""
    problems = []
    for target, options in literalincludes(page):
        problems += selection_problems(page.parent / target, options, f"{page.name}: literalinclude {target}")
    for target, options in show_source_calls(page):
        problems += selection_problems(REPO_ROOT / target, options, f"{page.name}: show_source({target!r})")
    return problems


@dataclass
class Source:
    """A piece of the course's own source, shown in a chapter: highlighted in Jupyter, Colab and the
    book (HTML with inline styles), plain text anywhere else."""

    path: str
    text: str

    @property
    def language(self) -> str:
        return {".py": "python", ".js": "javascript", ".json": "json", ".html": "html"}.get(Path(self.path).suffix, "text")

    def __repr__(self) -> str:
        return f"# {self.path}\n{self.text}"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import get_lexer_by_name

        code = highlight(self.text, get_lexer_by_name(self.language), HtmlFormatter(noclasses=True, nowrap=False))
        return f'<div><div style="font-family:monospace;font-size:85%;opacity:.75">{self.path}</div>{code}</div>'


def show_source(target, **markers: str) -> Source:
    """The source of a function or class, or of the part of a repository file between text markers.

    ``show_source(wikitext.strip_links)`` shows one function (its source found by ``inspect``);
    ``show_source("site/worker.js", start_after="// [pipeline]", end_before="// [/pipeline]")``
    shows part of a file, the path relative to the repository root, selected as mystmd's
    ``literalinclude`` would. A chapter cell ending with this call displays the code in Jupyter and
    on Colab, where a ``literalinclude`` directive would show as raw text, and in the book. A marker
    that no longer occurs exactly once, or a selection that cuts a function, raises ``ValueError``
    (and ``tests/test_book.py`` checks every chapter's calls without running them).
    """
    import inspect

    unknown = sorted(set(markers) - set(SHOW_SOURCE_OPTIONS))
    if unknown:
        raise TypeError(f"show_source: unknown option(s) {unknown}; use {', '.join(SHOW_SOURCE_OPTIONS)}")
    if not isinstance(target, (str, Path)):
        if markers:
            raise TypeError("show_source: markers select part of a file; give the file's path, not an object")
        file = Path(inspect.getsourcefile(target)).resolve()
        shown = file.relative_to(REPO_ROOT).as_posix() if file.is_relative_to(REPO_ROOT) else file.name
        return Source(shown, textwrap.dedent(inspect.getsource(target)).rstrip() + "\n")
    options = {name.replace("_", "-"): value for name, value in markers.items()}
    path = REPO_ROOT / target
    problems = selection_problems(path, options, f"show_source({str(target)!r})")
    if problems:
        raise ValueError("; ".join(problems) + ": update the chapter's markers to frame the code its prose explains")
    text = included_text(path.read_text(encoding="utf-8"), options)
    return Source(Path(target).as_posix(), textwrap.dedent(text.strip("\n")) + "\n")


def check_book(root: Path | str = REPO_ROOT, timeout: float = 600) -> BookReport:
    """Validate the book at ``root`` in a temporary copy (the repository is left untouched)."""
    root = Path(root)
    missing = [page for page in toc_files(root) if not (root / page).exists()]
    with tempfile.TemporaryDirectory(prefix="book-") as tmp:
        book = copy_book(root, Path(tmp) / "book")
        prepare_offline(book)
        report = run_myst(book, timeout=timeout)
    report.problems[:0] = [f"myst.yml lists {page}, which does not exist" for page in missing]
    report.problems += broken_local_links(root)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Validate the course-book offline with mystmd (warnings fail).")
    parser.add_argument("command", choices=["check"])
    parser.add_argument("--root", type=Path, default=REPO_ROOT)
    args = parser.parse_args(argv)
    report = check_book(args.root)
    if report.ok:
        print(f"book ok: {len(toc_files(args.root))} pages, no warnings ({' '.join(MYST_COMMAND)})")
        return 0
    print(report.log, file=sys.stderr)
    print(f"book has {len(report.problems)} problem(s) (myst exit {report.returncode}):", file=sys.stderr)
    for problem in report.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
