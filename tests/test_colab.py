"""helpers.colab: the set-up report of every chapter (GPU, memory, precision, Drive), with torch.cuda faked."""
from __future__ import annotations

import shutil
import subprocess
import sys
import types
from pathlib import Path

import jupytext
import pytest
import torch

from helpers import colab
from helpers.course import CHAPTERS
from helpers.profiles import REPO_ROOT


def _fake_gpu(monkeypatch, name, capability, memory_gib, bf16=True):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device=None: types.SimpleNamespace(total_memory=int(memory_gib * 2**30)))


def test_cpu_report_says_fp32_and_no_gpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    report = colab.setup_report()
    assert (report.device, report.gpu_name, report.precision, report.on_colab, report.drive) == ("cpu", None, "fp32", False, None)
    out = capsys.readouterr().out
    assert "GPU:       none (CPU)" in out and "precision: fp32" in out


def test_t4_gets_fp16_even_if_bf16_is_emulated(monkeypatch, capsys):
    _fake_gpu(monkeypatch, "Tesla T4", (7, 5), 14.7, bf16=True)
    report = colab.setup_report(show=True)
    assert report.precision == "fp16" and report.gpu_name == "Tesla T4"
    assert report.gpu_memory_gib == 14.7 and report.compute_capability == "7.5"
    assert "Tesla T4, 14.7 GiB, compute capability 7.5" in capsys.readouterr().out


def test_a100_gets_bf16(monkeypatch):
    _fake_gpu(monkeypatch, "NVIDIA A100-SXM4-40GB", (8, 0), 39.4)
    assert colab.setup_report(show=False).precision == "bf16"


def test_drive_is_mounted_on_colab_by_default_where_the_run_folder_lives(monkeypatch):
    assert not colab.wants_drive(None)  # not Colab here
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert colab.wants_drive(None)  # every profile: the run folder is on Drive
    assert not colab.wants_drive(False)  # one runtime for everything, chosen
    assert colab.wants_drive(True)


def test_mount_drive_calls_google_colab_drive_mount(monkeypatch, tmp_path):
    mounted = []
    google = types.ModuleType("google")
    google_colab = types.ModuleType("google.colab")
    google_colab.drive = types.SimpleNamespace(mount=lambda point: (mounted.append(point), Path(point, "MyDrive").mkdir(parents=True)))
    google.colab = google_colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", google_colab)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(colab, "DRIVE_MOUNTPOINT", tmp_path / "content-drive")  # never /content on this machine
    report = colab.setup_report(show=False)
    assert report.on_colab and report.drive == str(tmp_path / "content-drive" / "MyDrive")
    assert mounted == [str(tmp_path / "content-drive")]
    mounted.clear()
    assert colab.mount_drive(tmp_path) == tmp_path / "MyDrive"
    assert str(tmp_path) in mounted
    assert colab.mount_drive(tmp_path) == tmp_path / "MyDrive" and mounted.count(str(tmp_path)) == 1  # idempotent


def test_mount_drive_off_colab_does_nothing(capsys):
    assert colab.mount_drive() is None
    assert "not on Colab" in capsys.readouterr().out


def test_a_package_imported_before_the_install_asks_for_a_restart(monkeypatch):
    monkeypatch.setitem(sys.modules, "numpy", types.SimpleNamespace(__version__="1.0.0"))
    stale = colab.stale_modules(("numpy",))
    assert stale and stale[0].startswith("numpy 1.0.0")
    report = colab.SetupReport(False, "2.13.0", "cpu", None, None, None, "fp32", stale=stale)
    assert any("RESTART NEEDED" in line for line in report.lines())
    assert colab.stale_modules(("torch",)) == []  # the real torch matches its installed version


def test_the_set_up_report_does_not_import_the_fine_tuning_stack():
    # Every chapter's first cell runs it: it must stay light (finetune pulls peft, datasets, the Trainer).
    code = ("import sys; from helpers import colab; colab.setup_report(show=False); "
            "print(sorted(name for name in ('helpers.finetune', 'peft') if name in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


class FakeDrive:
    """Just enough of the Drive v3 API: files().list(q=...) for the queries purge_trashed_checkpoints
    makes (parsed here, so a changed query fails), and files().delete(fileId=...)."""

    def __init__(self, items):
        self.items = {item["id"]: item for item in items}
        self.deleted = []

    def files(self):
        return self

    def list(self, q, fields):
        import re

        clauses = dict.fromkeys(["name", "parent", "folder", "trashed", "prefix"])
        if m := re.search(r"name = '((?:[^'\\]|\\.)*)'", q):
            clauses["name"] = m.group(1).replace("\\'", "'")
        clauses["parent"] = re.search(r"'([^']*)' in parents", q).group(1)
        clauses["folder"] = "mimeType = 'application/vnd.google-apps.folder'" in q
        clauses["trashed"] = re.search(r"trashed = (true|false)", q).group(1) == "true"
        if m := re.search(r"name contains '([^']*)'", q):
            clauses["prefix"] = m.group(1)
        found = [item for item in self.items.values()
                 if item["parent"] == clauses["parent"] and item["trashed"] == clauses["trashed"]
                 and (clauses["name"] is None or item["name"] == clauses["name"])
                 and (not clauses["folder"] or item["folder"])
                 and (clauses["prefix"] is None or clauses["prefix"] in item["name"])]
        return types.SimpleNamespace(execute=lambda: {"files": [{"id": i["id"], "name": i["name"]} for i in found]})

    def delete(self, fileId):
        self.deleted.append(fileId)
        return types.SimpleNamespace(execute=lambda: self.items.pop(fileId))


def test_rotated_checkpoints_are_deleted_from_drives_trash_and_nothing_else(tmp_path):
    def folder(id_, name, parent, trashed=False):
        return {"id": id_, "name": name, "parent": parent, "trashed": trashed, "folder": True}

    drive = FakeDrive([
        folder("c", "corpus-to-client", "root"), folder("p", "colab", "c"), folder("k", "checkpoints", "p"),
        folder("m", "full", "k"),
        folder("old1", "checkpoint-500", "m", trashed=True), folder("old2", "checkpoint-1000", "m", trashed=True),
        folder("live", "checkpoint-1500", "m"),  # kept by the Trainer: not in the trash
        folder("mine", "checkpoint-7", "elsewhere", trashed=True),  # the attendee's own, another folder
        folder("note", "notes", "m", trashed=True),  # trashed, in the folder, but not a checkpoint
    ])
    mydrive = tmp_path / "drive" / "MyDrive"
    purged = colab.purge_trashed_checkpoints(mydrive / "corpus-to-client/colab/checkpoints/full", service=drive,
                                             drive_root=mydrive)
    assert purged == ["checkpoint-1000", "checkpoint-500"] and sorted(drive.deleted) == ["old1", "old2"]
    assert {"live", "mine", "note"} <= set(drive.items)
    assert colab.purge_trashed_checkpoints(mydrive / "corpus-to-client/full/checkpoints", service=drive,
                                           drive_root=mydrive) == []  # no such folder: nothing asked, nothing deleted
    with pytest.raises(ValueError):
        colab.purge_trashed_checkpoints(tmp_path / "not-on-drive", service=drive, drive_root=mydrive)


# --- the version Colab runtimes clone ---------------------------------------------------------------


def test_every_badge_and_install_cell_name_one_ref():
    """main here; a workshop's tag on its pinned commit (python -m helpers.colab pin): one ref in every file."""
    refs = colab.course_refs()
    chapters = [name for name in refs if name.startswith("notebooks/")]
    assert len(chapters) == 2 * len(CHAPTERS)  # both twins of every chapter
    assert len(set().union(*refs.values())) == 1 and all(len(found) == 1 for found in refs.values()), refs


def _copy_of_the_ref_files(tmp_path: Path) -> Path:
    for path in colab.files_naming_the_course_ref():
        target = tmp_path / path.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return tmp_path


def _the_ref(repo: Path) -> str:
    (ref,) = set().union(*colab.course_refs(repo).values())
    return ref


def test_pinning_a_workshop_tag_rewrites_every_badge_and_clone_and_pinning_back_undoes_it(tmp_path):
    repo = _copy_of_the_ref_files(tmp_path)
    original = _the_ref(repo)  # main; a workshop's tag on a pinned commit
    before = {path: path.read_bytes() for path in colab.files_naming_the_course_ref(repo)}
    changed = colab.pin_course_ref("pin-test-2026-12", repo)
    assert set(changed) == set(before)
    assert all(found == {"pin-test-2026-12"} for found in colab.course_refs(repo).values())
    notebook = repo / "notebooks" / f"{CHAPTERS['05_finetune']}.md"
    text = notebook.read_text()
    assert f"/blob/pin-test-2026-12/notebooks/{CHAPTERS['05_finetune']}.ipynb" in text
    assert "git clone --depth 1 --branch pin-test-2026-12 https://github.com/corpus-to-client/corpus-to-client " in text
    for md in (repo / "notebooks").glob("*.md"):  # the twins still agree, cell for cell
        assert ([c.source for c in jupytext.read(md).cells]
                == [c.source for c in jupytext.read(md.with_suffix(".ipynb")).cells]), md.name
    assert colab.pin_course_ref("pin-test-2026-12", repo) == []  # already pinned: nothing rewritten
    colab.pin_course_ref(original, repo)
    assert {path: path.read_bytes() for path in before} == before


@pytest.mark.parametrize("ref", ["", "-rf", "a..b", "has space", "x;rm", "tag.lock", "v1/", "a)b"])
def test_a_ref_that_git_or_a_shell_line_would_misread_is_refused(tmp_path, ref):
    repo = _copy_of_the_ref_files(tmp_path)
    before = {path: path.read_bytes() for path in colab.files_naming_the_course_ref(repo)}
    with pytest.raises(ValueError, match="tag or branch name"):
        colab.pin_course_ref(ref, repo)
    assert {path: path.read_bytes() for path in before} == before


def test_the_pin_command_reports_the_files_and_refuses_a_bad_ref(tmp_path, capsys):
    repo = _copy_of_the_ref_files(tmp_path)
    assert colab.main(["pin", "pin-test-2026-12"], repo_root=repo) == 0
    out = capsys.readouterr().out
    assert f"{len(colab.files_naming_the_course_ref(repo))} files now name 'pin-test-2026-12'" in out
    assert "git tag pin-test-2026-12" in out
    assert colab.main(["pin", "a..b"], repo_root=repo) == 2 and "not a tag or branch name" in capsys.readouterr().err
