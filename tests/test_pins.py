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

from helpers.colab import COLAB_OWNED
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


def pyproject_requirements() -> dict[str, Requirement]:
    """pyproject.toml's dependencies and extras (the self-reference ``corpus-to-client[runner]`` left out)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    requirements = [Requirement(line) for line in lines]
    return {canonicalize_name(r.name): r for r in requirements if canonicalize_name(r.name) != "corpus-to-client"}


def environment_pins() -> dict[str, str]:
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    return _pins(pip_section, "environment.yml")


def constraints_pins(name: str = "constraints.txt") -> dict[str, str]:
    return _pins((REPO_ROOT / name).read_text().splitlines(), name)


def test_constraints_and_environment_pin_the_same_versions():
    assert environment_pins() == constraints_pins()
    assert list(environment_pins()) == list(constraints_pins()), "same order, torch first"


def test_pyproject_pins_what_the_course_teaches_and_floors_what_colab_brings():
    pins, requirements = constraints_pins(), pyproject_requirements()
    assert set(requirements) == set(pins), "pyproject.toml and constraints.txt must name the same packages"
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    on_colab = {canonicalize_name(Requirement(line).name)  # what the Colab install (-e ".[colab]") asks for
                for line in project["dependencies"] + project["optional-dependencies"]["colab"]}
    for name, requirement in requirements.items():
        assert requirement.specifier.contains(pins[name]), f"pyproject's {requirement} rejects the pin {name}=={pins[name]}"
        exact = [spec for spec in requirement.specifier if spec.operator == "=="]
        if name in COLAB_OWNED and name in on_colab:
            assert not exact, f"{name} is Colab's: give it a floor in pyproject.toml, not a pin ({requirement})"
        else:
            assert exact and exact[0].version == pins[name], f"pin {name}=={pins[name]} in pyproject.toml too ({requirement})"
    assert not {"ipykernel", "tornado", "pyzmq"} & on_colab, "the Colab install must not ask for kernel packages"


def test_colab_constraints_are_the_pins_without_what_colab_brings():
    colab = constraints_pins("constraints-colab.txt")
    expected = {name: version for name, version in constraints_pins().items() if name not in COLAB_OWNED}
    assert colab == expected and list(colab) == list(expected), (
        "constraints-colab.txt must be constraints.txt without helpers.colab.COLAB_OWNED, in the same order")
    assert {"torch", "numpy", "pandas", "ipykernel"} <= set(COLAB_OWNED)


def test_torch_is_pinned_and_installed_first_in_every_setup_path():
    assert constraints_pins()["torch"] == "2.13.0"
    setup = (REPO_ROOT / "scripts" / "setup.sh").read_text()
    torch_step = setup.index("pip install -q -c constraints.txt torch")
    assert torch_step < setup.index("pip install -q -c constraints.txt -e")
    assert list(environment_pins())[0] == "torch"


def test_environment_uses_a_python_the_pins_support():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    python = next(item for item in env["dependencies"] if isinstance(item, str) and item.startswith("python"))
    assert python == "python=3.11"


@pytest.mark.parametrize("name,version", sorted(constraints_pins().items()))
def test_installed_version_matches_its_pin(name, version):
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{name} belongs to an extra that is not installed here")
    assert installed.split("+")[0] == version, f"{name} {installed} is installed but {version} is pinned"


def test_pinned_packages_accept_each_others_pins():
    pins = constraints_pins()
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


INSTALL_CELL = ("if \"google.colab\" in sys.modules:", "!pip install -c constraints-colab.txt -e \".[colab]\"")


@pytest.mark.parametrize("twin", sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.md")), ids=lambda p: p.name)
def test_every_notebook_installs_on_colab_only_and_stops_when_it_fails(twin):
    import jupytext

    cells = [c for c in jupytext.read(twin).cells if c.cell_type == "code"]
    parameters = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    install = cells[parameters + 1].source
    assert all(part in install for part in INSTALL_CELL), (
        f"{twin.name}: the first code cell after the parameters must install on Colab only with "
        f"`pip install -c constraints-colab.txt -e \".[colab]\"` (docs/notebook_template.md)")
    commands = [line.strip() for line in install.splitlines() if line.strip().startswith("!")]
    after = install.split("\n")
    for command in commands:  # IPython does not raise when a shell command fails: each one is checked
        index = next(i for i, line in enumerate(after) if line.strip() == command)
        assert "if _exit_code:" in after[index + 1] and "raise" in after[index + 2], f"{twin.name}: {command} unchecked"
    pip_lines = [line.strip() for c in cells for line in c.source.splitlines() if "pip install" in line]
    assert all("-c constraints" in line for line in pip_lines), f"{twin.name}: unconstrained pip install {pip_lines}"
    # An install whose output is hidden hides its errors too: no %%capture, no quiet flags, no redirection.
    hiding = [line for c in cells for line in c.source.splitlines()
              if line.strip().startswith("%%capture") or ("pip install" in line and (
                  re.search(r"\s-q+\b|--quiet", line) or ">" in line.split("pip install", 1)[1]))]
    assert not hiding, f"{twin.name}: an install with its output hidden: {hiding}"
    assert "colab.setup_report(" in cells[parameters + 2].source, f"{twin.name}: report the GPU and precision after installing"
    assert "resolve_run_dir(profile, run_dir, drive=setup.drive)" in cells[parameters + 2].source, (
        f"{twin.name}: on Colab the run folder is on Drive, found after mounting it")
