"""The course-book: myst.yml lists every chapter in order, and mystmd validates it offline.

`python -m helpers.book check` runs `myst build --site --strict --ci` on a copy of the book (stub
theme, remote images seeded: no network) and fails on any mystmd error *or warning*. The planted
tests prove the validation can fail: a broken cross-reference, a missing image and a missing page
in a copy of the book are each caught.
"""
from __future__ import annotations

import shutil
import tomllib

import pytest

from helpers import book
from helpers.profiles import REPO_ROOT

NOTEBOOKS = sorted(path.relative_to(REPO_ROOT).as_posix() for path in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

needs_myst = pytest.mark.skipif(
    shutil.which("myst") is None or shutil.which("node") is None,
    reason="mystmd (dev extra) and Node.js are needed: pip install -c constraints.txt -e '.[dev]'",
)


def test_toc_lists_every_chapter_notebook_in_order():
    chapters = [page for page in book.toc_files() if page.startswith("notebooks/")]
    assert chapters == NOTEBOOKS, "myst.yml's toc must list notebooks/NN_*.ipynb, all of them, in order"


def test_toc_pages_exist():
    missing = [page for page in book.toc_files() if not (REPO_ROOT / page).exists()]
    assert not missing, f"myst.yml lists missing pages: {missing}"


def test_mystmd_is_pinned_exactly_in_the_dev_extra():
    dev = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert any(line.startswith("mystmd==") for line in dev)



def test_every_literalinclude_shows_code_that_exists():
    pages = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.md"))
    problems = [problem for page in pages for problem in book.literalinclude_problems(page)]
    assert not problems, "\n".join(problems)


def test_the_literalinclude_check_catches_what_would_drift(tmp_path):
    (tmp_path / "code.py").write_text("class Outer:\n    def inner(self):\n        pass\n\n\ndef top():\n    return 1\n\n\n"
                                      "def after():\n    pass\n\n# [part]\nx = 1\n# [/part]\n")
    page = tmp_path / "page.md"
    good = ["```{literalinclude} code.py\n:start-at: def top(\n:end-before: def after(\n```",
            "```{literalinclude} code.py\n:start-at: class Outer\n:end-before: def top(\n```",
            "```{literalinclude} code.py\n:start-after: # [part]\n:end-before: # [/part]\n```"]
    page.write_text("\n\n".join(good) + "\n")
    assert book.literalincludes(page)[0] == ("code.py", {"start-at": "def top(", "end-before": "def after("})
    assert book.literalinclude_problems(page) == []
    bad = {
        "```{literalinclude} missing.py\n:start-at: def top(\n```": "no such file",
        "```{literalinclude} code.py\n:pyobject: top\n```": "uses :pyobject:",
        "```{literalinclude} code.py\n:lines: 1-3\n```": "uses :lines:",
        "```{literalinclude} code.py\n:start-after: # [nowhere]\n```": "occurs 0 times",
        "```{literalinclude} code.py\n:start-at: def\n```": "occurs 3 times",
        "```{literalinclude} code.py\n:start-after: # [/part]\n:end-before: # [part]\n```": "select nothing",
        # a function inserted between the markers would show up in the book: caught
        "```{literalinclude} code.py\n:start-at: def top(\n:end-before: # [part]\n```": "shows 6 lines from top, which has 2",
        "```{literalinclude} code.py\n:start-at: def top(\n:end-before: return 1\n```": "shows 1 lines from top, which has 2",
    }
    for block, expected in bad.items():
        page.write_text(block + "\n")
        problems = book.literalinclude_problems(page)
        assert len(problems) == 1 and expected in problems[0], (block, problems)

def test_show_source_calls_in_a_chapter_are_checked_like_literalincludes(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```{code-cell} ipython3\nimport sys\nif 'google.colab' in sys.modules:\n    !pip install x\n"
                    "show_source('site/worker.js', start_after='// [pipeline]', end_before='// [/pipeline]')\n```\n\n"
                    "```{code-cell} ipython3\nshow_source(wikitext.strip_links)\n```\n\n"
                    "```{code-cell} ipython3\nbook.show_source('helpers/book.py', start_at='def show_source(', end_before='def nowhere(')\n```\n")
    assert book.show_source_calls(page) == [
        ("site/worker.js", {"start-after": "// [pipeline]", "end-before": "// [/pipeline]"}),
        ("helpers/book.py", {"start-at": "def show_source(", "end-before": "def nowhere("}),
    ]
    assert book.literalinclude_problems(page) == [
        "page.md: show_source('helpers/book.py'): marker 'def nowhere(' occurs 0 times, not once"]


def test_show_source_shows_the_code_it_names_and_refuses_drifted_markers():
    from helpers import wikitext

    function = book.show_source(wikitext.strip_links)
    assert function.path == "helpers/wikitext.py" and function.language == "python"
    assert function.text.startswith("def strip_links(") and "return" in function.text
    assert repr(function).splitlines()[0] == "# helpers/wikitext.py"
    worker = (REPO_ROOT / "site/worker.js").read_text(encoding="utf-8")
    part = book.show_source("site/worker.js", start_after="// [pipeline]", end_before="// [/pipeline]")
    assert part.language == "javascript" and all(line in worker for line in part.text.splitlines())
    assert "// [pipeline]" not in part.text and 'pipeline("text-generation"' in part.text
    html = part._repr_html_()
    assert "site/worker.js" in html and "text-generation" in html and "<style" not in html  # inline styles only
    with pytest.raises(ValueError, match="occurs 0 times"):
        book.show_source("site/worker.js", start_after="// [no such marker]")
    with pytest.raises(ValueError, match="which has"):  # a selection that cuts a function in two
        book.show_source("helpers/wikitext.py", start_at="def strip_braces(", end_before="def strip_links(")
    with pytest.raises(TypeError, match="unknown option"):
        book.show_source("site/worker.js", lines="1-3")


@needs_myst
def test_the_book_builds_offline_without_warnings():
    report = book.check_book()
    assert report.ok, f"mystmd exit {report.returncode}; problems:\n" + "\n".join(report.problems) + "\n" + report.log[-3000:]


@pytest.fixture
def book_copy(tmp_path):
    return book.copy_book(REPO_ROOT, tmp_path / "repo")


def _plant(root, page, text):
    path = root / page
    path.write_text(path.read_text(encoding="utf-8") + "\n" + text + "\n", encoding="utf-8")


@needs_myst
@pytest.mark.parametrize("planted,expected", [
    ("See [the missing section](#no-such-target).", "no-such-target"),
    ("As {ref}`missing-label` shows.", "missing-label"),
    ("![a figure](figures/missing.png)", "missing.png"),
    ("Read [chapter 99](notebooks/99_missing.md).", "99_missing"),
])
def test_validation_fails_on_a_planted_problem(book_copy, planted, expected):
    _plant(book_copy, "README.md", planted)
    report = book.check_book(book_copy)
    assert not report.ok
    assert any(expected in problem for problem in report.problems), report.problems


@needs_myst
def test_validation_fails_on_a_broken_reference_inside_a_notebook(book_copy):
    import nbformat

    path = book_copy / "notebooks" / "03_pairing.ipynb"
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_markdown_cell("Back to {ref}`no-such-figure`."))
    nbformat.write(notebook, path)
    report = book.check_book(book_copy)
    assert not report.ok and any("no-such-figure" in problem for problem in report.problems), report.problems


def test_a_toc_entry_without_its_file_is_reported(book_copy):
    (book_copy / "benchmarks" / "README.md").unlink()
    with pytest.raises(FileNotFoundError) if shutil.which("myst") is None else _nullcontext():
        report = book.check_book(book_copy)
        assert any("benchmarks/README.md" in problem for problem in report.problems)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
