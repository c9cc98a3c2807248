"""The Colab install leaves Colab's own packages alone.

Each notebook's install cell runs, on Colab only, ``pip install -c constraints-colab.txt -e ".[colab]"``.
Here pip resolves exactly that install (``--dry-run --report``, from PyPI) in a fresh virtual
environment that holds a Colab-like set of already-installed packages (their metadata only:
``COLAB_RUNTIME``), and the test fails if pip would install, upgrade or downgrade any of them:
replacing torch pulls gigabytes of CUDA wheels, and a new ipykernel brings tornado and pyzmq under
a running kernel (the ``colab`` extra's papermill pulls nbclient, whose 0.11 needs jupyter-client 8:
``constraints-colab.txt`` holds it at 0.10.2). It needs PyPI (CI and this workplace reach it).
"""
from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from helpers.colab import COLAB_OWNED
from helpers.profiles import REPO_ROOT

# What a Colab GPU runtime reported (`pip list`, T4 runtime, 2025); update when Colab's image moves.
COLAB_RUNTIME = {
    "torch": "2.8.0+cu126",
    "torchvision": "0.23.0+cu126",
    "torchaudio": "2.8.0+cu126",
    "numpy": "2.0.2",
    "pandas": "2.2.2",
    "matplotlib": "3.10.0",
    "tqdm": "4.67.1",
    "ipykernel": "6.17.1",
    "ipython": "7.34.0",
    "tornado": "6.4.2",
    "pyzmq": "24.0.1",
    "jupyter-client": "6.1.12",
    "jupyter-core": "5.7.2",
    "traitlets": "5.7.1",
}


def _fake_installed(site_packages: Path, name: str, version: str) -> None:
    """Metadata of an installed distribution, as pip reads it (no code: the resolver needs none)."""
    folder = site_packages / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir()
    (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (folder / "INSTALLER").write_text("pip\n")
    (folder / "RECORD").write_text("")


def test_the_colab_runtime_set_covers_every_package_the_course_leaves_to_colab():
    assert set(COLAB_RUNTIME) == set(COLAB_OWNED)


def test_the_colab_install_replaces_none_of_colabs_packages(tmp_path):
    environment = tmp_path / "colab"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = environment / "bin" / "python"
    site_packages = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    for name, version in COLAB_RUNTIME.items():
        _fake_installed(site_packages, name, version)
    report = tmp_path / "report.json"
    done = subprocess.run(
        [python, "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check", "--report", report,
         "-c", REPO_ROOT / "constraints-colab.txt", "-e", f"{REPO_ROOT}[colab]"],
        capture_output=True, text=True, timeout=900)
    if done.returncode != 0 and "Could not fetch URL" in done.stderr + done.stdout:
        pytest.fail(f"PyPI is not reachable from here; this test resolves the install from it:\n{done.stderr[-2000:]}")
    assert done.returncode == 0, f"pip could not resolve the Colab install:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    installs = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
                for item in json.loads(report.read_text())["install"]}
    replaced = {name: installs[name] for name in COLAB_RUNTIME if canonicalize_name(name) in installs}
    assert not replaced, f"the Colab install would replace Colab's own packages: {replaced}"
    assert "transformers" in installs and installs["transformers"] == "4.57.6", installs
