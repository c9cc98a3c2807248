"""The course's pins: one set, the same everywhere, and the one actually installed.

Fails loudly when pyproject.toml, environment.yml and constraints.txt disagree, when an installed
package drifts from its pin, or when a pinned package's own requirements reject another pin (the
way optimum-onnx 0.1.0 rejects transformers >= 4.58).
"""
from __future__ import annotations

import re
import tomllib
from importlib import metadata

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from helpers.profiles import REPO_ROOT

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)$")


def _pins(lines: list[str], where: str) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{where}: {line!r} is not an exact pin (name==version)"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    return _pins(lines, "pyproject.toml")


def environment_pins() -> dict[str, str]:
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    return _pins(pip_section, "environment.yml")


def constraints_pins() -> dict[str, str]:
    return _pins((REPO_ROOT / "constraints.txt").read_text().splitlines(), "constraints.txt")


def test_pyproject_environment_and_constraints_pin_the_same_versions():
    expected = pyproject_pins()
    assert environment_pins() == expected
    assert constraints_pins() == expected


def test_torch_is_pinned_and_installed_first_in_every_setup_path():
    assert pyproject_pins()["torch"] == "2.13.0"
    setup = (REPO_ROOT / "scripts" / "setup.sh").read_text()
    torch_step = setup.index("pip install -q -c constraints.txt torch")
    assert torch_step < setup.index("pip install -q -c constraints.txt -e")
    assert list(environment_pins())[0] == "torch"


def test_environment_uses_a_python_the_pins_support():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    python = next(item for item in env["dependencies"] if isinstance(item, str) and item.startswith("python"))
    assert python == "python=3.11"


@pytest.mark.parametrize("name,version", sorted(pyproject_pins().items()))
def test_installed_version_matches_its_pin(name, version):
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{name} belongs to an extra that is not installed here")
    assert installed.split("+")[0] == version, f"{name} {installed} is installed but {version} is pinned"


def test_pinned_packages_accept_each_others_pins():
    pins = pyproject_pins()
    conflicts, checked = [], 0
    for name in pins:
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requirements:
            requirement = Requirement(line)
            if requirement.marker and "extra" in str(requirement.marker):
                continue
            other = canonicalize_name(requirement.name)
            if other in pins:
                checked += 1
                if not requirement.specifier.contains(pins[other], prereleases=True):
                    conflicts.append(f"{name} requires {requirement}, but {other}=={pins[other]} is pinned")
    assert checked > 10, "too few inter-package requirements were checked to mean anything"
    assert not conflicts, "\n".join(conflicts)


def test_constraints_txt_is_exactly_pyprojects_pins_in_order():
    lines = [line.strip() for line in (REPO_ROOT / "constraints.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    expected = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    assert lines == expected, "regenerate constraints.txt from pyproject.toml (same pins, same order)"


INSTALL_CELL = ("if \"google.colab\" in sys.modules:", "!pip install -c constraints.txt -e .")


@pytest.mark.parametrize("twin", sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.md")), ids=lambda p: p.name)
def test_every_notebook_installs_with_the_constraints_on_colab_only(twin):
    import jupytext

    cells = [c for c in jupytext.read(twin).cells if c.cell_type == "code"]
    parameters = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    install = cells[parameters + 1].source
    assert all(part in install for part in INSTALL_CELL), (
        f"{twin.name}: the first code cell after the parameters must install on Colab only with "
        f"`pip install -c constraints.txt -e .` (docs/notebook_template.md)")
    pip_lines = [line.strip() for c in cells for line in c.source.splitlines() if "pip install" in line]
    assert all("-c constraints.txt" in line for line in pip_lines), f"{twin.name}: unconstrained pip install {pip_lines}"
    assert "colab.setup_report(" in cells[parameters + 2].source, f"{twin.name}: report the GPU and precision after installing"
