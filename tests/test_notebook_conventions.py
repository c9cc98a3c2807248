"""The course-book's conventions for notebooks, checked on every notebook in notebooks/.

- each chapter is a jupytext pair (NN_name.ipynb + NN_name.md) and the two are in sync;
- committed .ipynb carry no outputs;
- each has a papermill `parameters` cell with `profile` and `run_dir`;
- each opens in Colab from its own badge;
- the runner knows every chapter notebook, and every notebook it runs exists.
"""
from __future__ import annotations

import json
from pathlib import Path

import jupytext
import pytest

from helpers import colab
from helpers.course import CHAPTERS
from helpers.profiles import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
IPYNBS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
TWINS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.md"))


def _cells(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_there_are_notebooks_to_check():
    assert IPYNBS, "no chapter notebooks found in notebooks/"


def test_pairing_is_declared_in_config():
    config = (REPO_ROOT / "jupytext.toml").read_text()
    assert 'formats = "ipynb,md:myst"' in config


@pytest.mark.parametrize("twin", TWINS, ids=lambda p: p.name)
def test_every_text_twin_has_its_notebook(twin: Path):
    assert twin.with_suffix(".ipynb").exists(), f"{twin.name} has no .ipynb: run `jupytext --sync {twin}`"


@pytest.mark.parametrize("ipynb", IPYNBS, ids=lambda p: p.name)
def test_pair_is_in_sync(ipynb: Path):
    twin = ipynb.with_suffix(".md")
    assert twin.exists(), f"{ipynb.name} has no MyST twin: run `jupytext --set-formats ipynb,md:myst {ipynb}`"
    from_ipynb, from_md = jupytext.read(ipynb), jupytext.read(twin)
    assert _cells(from_ipynb) == _cells(from_md), f"{ipynb.name} and {twin.name} differ: run `jupytext --sync {twin}`"


@pytest.mark.parametrize("ipynb", IPYNBS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(ipynb: Path):
    cells = json.loads(ipynb.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{ipynb.name}: cells {dirty} carry outputs; strip them (`jupytext --sync` from the .md)"


@pytest.mark.parametrize("ipynb", IPYNBS, ids=lambda p: p.name)
def test_notebook_has_a_papermill_parameters_cell(ipynb: Path):
    cells = jupytext.read(ipynb).cells
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{ipynb.name}: expected one cell tagged 'parameters', found {len(tagged)}"
    source = tagged[0].source
    assert "profile = " in source and "run_dir = " in source


@pytest.mark.parametrize("ipynb", IPYNBS, ids=lambda p: p.name)
def test_notebook_opens_in_colab_from_its_own_badge(ipynb: Path):
    text = ipynb.with_suffix(".md").read_text()
    # at blob/main, or at a workshop's tag (helpers.colab.pin_course_ref)
    assert any(text[badge.end():].startswith(f"{ipynb.name})") for badge in colab.COLAB_BADGE.finditer(text)), ipynb.name


def test_runner_and_notebooks_agree():
    stems = {p.stem for p in IPYNBS}
    for chapter, stem in CHAPTERS.items():
        assert stem in stems, f"chapter {chapter} runs notebooks/{stem}.ipynb, which does not exist"
        assert stem[:2] == chapter[:2]


def test_notebooks_never_read_the_shared_folder_at_run_time():
    for path in [*NOTEBOOKS.glob("*.md"), *(REPO_ROOT / "helpers").glob("*.py")]:
        assert "shared/corpora" not in path.read_text(), f"{path} reads ../shared; use data/tiny"


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    setup_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in setup_block.strip().splitlines()]
    assert commands == ["make course", "make test"], "the README's set-up is two commands: course, then tests"
    ci = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()]
    assert ci[-1] == "make test"


@pytest.mark.parametrize("twin", TWINS, ids=lambda p: p.name)
def test_the_chapter_template_starts_as_every_chapter_does(twin: Path):
    """docs/notebook_template.md is what a new chapter is copied from: its parameters, install and set-up
    cells are each chapter's, with the chapter's name in place of NN_name."""
    chapter = next(name for name, stem in CHAPTERS.items() if stem == twin.stem)
    template = jupytext.read(REPO_ROOT / "docs" / "notebook_template.md")
    code = [source.replace("NN_name", chapter) for kind, source in _cells(template) if kind == "code"]
    chapter_code = [source for kind, source in _cells(jupytext.read(twin)) if kind == "code"]
    assert chapter_code[: len(code)] == code, f"{twin.name}'s first cells differ from docs/notebook_template.md"
