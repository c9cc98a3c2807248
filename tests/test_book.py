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
