"""What every chapter's set-up cell reports: where it runs, which GPU, which precision, and Drive.

The install itself is a notebook cell (it must run before ``helpers`` exists on a fresh Colab
runtime): on Colab only, clone the repository and ``pip install -c constraints-colab.txt -e
".[colab]"``, output visible, stopping the notebook if the clone or the install fails. It leaves
Colab's own packages alone (``COLAB_OWNED``: torch with its CUDA build, numpy, pandas, the kernel):
``pyproject.toml`` gives them floors that Colab's versions meet, and ``constraints-colab.txt`` pins
everything else exactly as ``constraints.txt`` does (``tests/test_colab_install.py`` resolves that
install against a Colab-like set of packages). Each chapter opened from its badge gets a fresh
runtime, so each installs again: about a minute of downloads, nothing of Colab's replaced.

Then ``setup_report(mount_drive)``:

- says whether this is Colab, the torch version, the GPU's name, memory and compute capability;
- chooses the mixed precision with :func:`choose_precision` (bf16 from compute
  capability 8.0, fp16 on a T4, fp32 on a CPU);
- warns when a package was imported *before* the install replaced it (restart the session);
- mounts Google Drive on Colab (unless ``mount_drive=False``): the run folder lives there, so a
  chapter opened in its own runtime finds what the earlier chapters wrote
  (``course.resolve_run_dir``).

Which version a runtime clones: every chapter's badge opens the notebook at a git ref and its install
cell clones ``--branch`` that same ref, ``main`` in this repository. For a workshop,
``python -m helpers.colab pin TAG`` rewrites both in every chapter and in the README, to be committed
and tagged: attendees who open the chapters from that tag's README all run one version, whatever is
pushed to main during the workshop (:func:`pin_course_ref`).
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from helpers.course import atomic_output
from helpers.profiles import REPO_ROOT

DRIVE_MOUNTPOINT = Path("/content/drive")
# The packages a Colab runtime brings and the course's install must leave alone: replacing torch pulls
# gigabytes of CUDA wheels that may not match the runtime's driver; numpy, pandas, matplotlib and tqdm
# are imported by Colab's own tools; a new ipykernel brings tornado and pyzmq under a running kernel,
# which Colab warns can crash it. pyproject.toml gives these floors, constraints-colab.txt no pins.
COLAB_OWNED = ("torch", "torchvision", "torchaudio", "numpy", "pandas", "matplotlib", "tqdm", "ipykernel",
               "ipython", "tornado", "pyzmq", "jupyter-client", "jupyter-core", "traitlets")
# Packages whose already-imported version must match the installed one (else: restart the session).
WATCHED = ("torch", "numpy", "transformers", "datasets", "pandas", "matplotlib")


def on_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


@dataclass
class SetupReport:
    on_colab: bool
    torch_version: str
    device: str  # "cuda" or "cpu"
    gpu_name: str | None
    gpu_memory_gib: float | None
    compute_capability: str | None
    precision: str  # "bf16", "fp16" or "fp32"
    drive: str | None = None  # the mounted MyDrive folder, when mounted
    stale: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        where = "Google Colab" if self.on_colab else "not Colab (local or CI)"
        out = [f"runtime:   {where}, torch {self.torch_version}"]
        if self.device == "cuda":
            out.append(f"GPU:       {self.gpu_name}, {self.gpu_memory_gib:.1f} GiB, compute capability {self.compute_capability}")
        else:
            out.append("GPU:       none (CPU): fine for the tiny profile; on Colab choose Runtime > Change runtime type > T4 GPU")
        out.append(f"precision: {self.precision} (helpers.colab.choose_precision)")
        out.append(f"drive:     {self.drive or 'not mounted (checkpoints stay in the run folder)'}")
        if self.stale:
            out.append("RESTART NEEDED: " + ", ".join(self.stale) + " was imported before the install replaced it: "
                       "Runtime > Restart session, then run the notebook again (the clone is kept; pip finds the pins already met)")
        return out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def gpu_info() -> dict[str, Any]:
    """The first CUDA GPU's name, memory (GiB) and compute capability, or ``device="cpu"``."""
    import torch

    if not torch.cuda.is_available():
        return {"device": "cpu", "gpu_name": None, "gpu_memory_gib": None, "compute_capability": None}
    props = torch.cuda.get_device_properties(0)
    major, minor = torch.cuda.get_device_capability(0)
    return {
        "device": "cuda",
        "gpu_name": torch.cuda.get_device_name(0),
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "compute_capability": f"{major}.{minor}",
    }


def stale_modules(names: tuple[str, ...] = WATCHED) -> list[str]:
    """Packages imported in this process at a version other than the one now installed."""
    stale = []
    for name in names:
        module = sys.modules.get(name)
        if module is None:
            continue
        loaded = str(getattr(module, "__version__", "")).split("+")[0]
        try:
            installed = metadata.version(name).split("+")[0]
        except metadata.PackageNotFoundError:
            continue
        if loaded and loaded != installed:
            stale.append(f"{name} {loaded} (installed: {installed})")
    return stale


def wants_drive(mount_drive: bool | None) -> bool:
    """``mount_drive`` when given; else mount on Colab, where the run folder lives on Drive."""
    if mount_drive is not None:
        return bool(mount_drive)
    return on_colab()


def mount_drive(mountpoint: Path | str | None = None) -> Path | None:
    """Mount Google Drive on Colab (asks for authorisation once); return ``MyDrive``, or None elsewhere.

    ``mountpoint``: where to mount (default ``/content/drive``, Colab's usual place).
    """
    mountpoint = Path(mountpoint) if mountpoint is not None else DRIVE_MOUNTPOINT
    if not on_colab():
        print("mount_drive: not on Colab, nothing mounted; the run folder stays on this machine")
        return None
    if not (mountpoint / "MyDrive").is_dir():
        from google.colab import drive  # only importable on Colab

        drive.mount(str(mountpoint))
    return mountpoint / "MyDrive"


FOLDER_TYPE = "application/vnd.google-apps.folder"


def _quoted(name: str) -> str:
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def purge_trashed_checkpoints(folder: Path | str, *, service: Any = None,
                              drive_root: Path | str | None = None) -> list[str]:
    """Permanently delete the checkpoints the Trainer rotated out of ``folder``, a folder on Drive; return their names.

    On a mounted Drive a deleted file goes to the trash, where it still counts against the account's
    storage (15 GB free) for 30 days: every checkpoint ``save_total_limit`` rotates out, about 1 GB for
    distilgpt2, stays there. This asks the Drive API (on Colab, after ``google.colab.auth``'s consent)
    for the trashed ``checkpoint-*`` folders whose parent is ``folder`` and deletes them for good;
    nothing outside that folder, and nothing not in the trash, is touched. ``service``: a Drive v3
    client (``googleapiclient.discovery.build("drive", "v3")``), made here when not given.
    """
    drive_root = Path(drive_root) if drive_root is not None else DRIVE_MOUNTPOINT / "MyDrive"
    relative = Path(folder).relative_to(drive_root)  # ValueError: not a folder on Drive
    if service is None:
        from google.colab import auth  # only importable on Colab
        from googleapiclient.discovery import build

        auth.authenticate_user()
        service = build("drive", "v3")
    parent = "root"
    for name in relative.parts:
        found = service.files().list(
            q=f"name = {_quoted(name)} and {_quoted(parent)} in parents and mimeType = '{FOLDER_TYPE}' and trashed = false",
            fields="files(id, name)").execute()["files"]
        if not found:
            return []
        parent = found[0]["id"]
    trashed = service.files().list(
        q=f"{_quoted(parent)} in parents and trashed = true and name contains 'checkpoint-'",
        fields="files(id, name)").execute()["files"]
    for item in trashed:
        service.files().delete(fileId=item["id"]).execute()
    return sorted(item["name"] for item in trashed)


def choose_precision(device: Any = None) -> str:
    """``"bf16"``, ``"fp16"`` or ``"fp32"``: the mixed precision the hardware trains best in.

    bf16 on CUDA GPUs of compute capability 8.0 or more (A100, H100, H200): fp32's range, so no loss
    scaling. fp16 with loss scaling on older GPUs (a T4 is 7.5: it has no bf16 hardware, although
    ``torch.cuda.is_bf16_supported()`` may say yes through slow emulation). fp32 on CPU (and MPS).
    """
    import torch

    device = torch.device(device) if device is not None else None
    if (device is not None and device.type != "cuda") or not torch.cuda.is_available():
        return "fp32"
    if tuple(torch.cuda.get_device_capability(device)) >= (8, 0) and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp16"


def setup_report(mount_drive: bool | None = None, *, show: bool = True) -> SetupReport:
    """Report the runtime, GPU and precision (and mount Drive if wanted); print it unless ``show=False``."""
    import torch

    drive = None
    if wants_drive(mount_drive):
        mounted = globals()["mount_drive"]()
        drive = str(mounted) if mounted else None
    report = SetupReport(on_colab=on_colab(), torch_version=torch.__version__, precision=choose_precision(),
                         drive=drive, stale=stale_modules(), **gpu_info())
    if show:
        print("\n".join(report.lines()))
    return report


# --------------------------------------------------------------------------------------------------
# The version each Colab runtime clones: the badges' ref and the install cells' --branch, one ref.

COURSE_REPOSITORY = "corpus-to-client/corpus-to-client"
COLAB_BADGE = re.compile(r"(colab\.research\.google\.com/github/" + re.escape(COURSE_REPOSITORY) + r"/blob/)([^\s)\"]+?)(/notebooks/)")
_CLONE_REF = re.compile(r"(git clone --depth 1 --branch )(\S+)( https://github\.com/" + re.escape(COURSE_REPOSITORY) + r" )")
# A tag or branch name git accepts and a shell line and a URL can carry as they are.
_SAFE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")


def files_naming_the_course_ref(repo_root: Path = REPO_ROOT) -> list[Path]:
    """The files whose Colab badges or clone lines name the ref: every chapter (both twins), the README, the template."""
    notebooks = sorted((repo_root / "notebooks").glob("[0-9][0-9]_*.md")) + sorted((repo_root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return [*notebooks, repo_root / "README.md", repo_root / "docs" / "notebook_template.md"]


def course_refs(repo_root: Path = REPO_ROOT) -> dict[str, set[str]]:
    """Every ref the badges and clone lines name, per file (relative path): one ref everywhere when consistent."""
    refs = {}
    for path in files_naming_the_course_ref(repo_root):
        text = path.read_text(encoding="utf-8")
        refs[str(path.relative_to(repo_root))] = ({m.group(2) for m in COLAB_BADGE.finditer(text)}
                                                  | {m.group(2) for m in _CLONE_REF.finditer(text)})
    return refs


def pin_course_ref(ref: str, repo_root: Path = REPO_ROOT) -> list[Path]:
    """Make every Colab badge open, and every install cell clone, the course at ``ref``; return the files changed.

    For a workshop: run it on a branch, commit, tag that commit ``ref`` and push the tag. Each chapter
    opened from the tag's README then clones the tag, so every runtime of the workshop runs the same
    course even if main moves meanwhile. ``pin_course_ref("main")`` undoes it, byte for byte.
    """
    if not _SAFE_REF.fullmatch(ref) or ".." in ref or ref.endswith((".lock", ".")):
        raise ValueError(f"{ref!r} is not a tag or branch name the badges and clone lines can use: "
                         "letters, digits, '.', '_', '-' and '/' between parts, e.g. workshop-2026-12")
    changed = []
    for path in files_naming_the_course_ref(repo_root):
        text = path.read_text(encoding="utf-8")
        pinned = _CLONE_REF.sub(lambda m: m.group(1) + ref + m.group(3), COLAB_BADGE.sub(lambda m: m.group(1) + ref + m.group(3), text))
        if pinned != text:
            with atomic_output(path, encoding="utf-8", newline="") as handle:
                handle.write(pinned)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None, repo_root: Path = REPO_ROOT) -> int:
    parser = argparse.ArgumentParser(description="Pin the version Colab runtimes clone (for a workshop).")
    commands = parser.add_subparsers(dest="command", required=True)
    pin = commands.add_parser("pin", help="make every badge and install cell name REF (a tag, or main to undo)")
    pin.add_argument("ref")
    commands.add_parser("show", help="the refs the badges and install cells name now")
    args = parser.parse_args(argv)
    if args.command == "show":
        for name, refs in course_refs(repo_root).items():
            print(f"{name}: {', '.join(sorted(refs)) or 'none'}")
        return 0
    try:
        changed = pin_course_ref(args.ref, repo_root)
    except ValueError as error:
        print(f"helpers.colab pin: {error}", file=sys.stderr)
        return 2
    print(f"{len(changed)} files now name {args.ref!r}: " + ", ".join(str(p.relative_to(repo_root)) for p in changed))
    if args.ref != "main":
        print(f"next: git switch -c {args.ref}-pins && git commit -am 'Pin Colab to {args.ref}' && "
              f"git tag {args.ref} && git push origin {args.ref}; attendees open "
              f"https://github.com/{COURSE_REPOSITORY}/blob/{args.ref}/README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
