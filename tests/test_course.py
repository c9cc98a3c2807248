"""Run folders, summary.json and the papermill runner."""
from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import nbformat
import pytest

from helpers import course
from helpers.profiles import REPO_ROOT, UnknownProfileError


def test_record_chapter_merges_entries_in_chapter_order(tmp_path):
    course.record_chapter(tmp_path, "02_cleaning", metrics={"paragraphs_kept": 10})
    course.record_chapter(tmp_path, "01_dump", metrics={"articles_kept": 34})
    course.record_chapter(tmp_path, "01_dump", status="ok", wall_seconds=1.23456)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary["chapters"]) == ["01_dump", "02_cleaning"]
    assert summary["chapters"]["01_dump"] == {"metrics": {"articles_kept": 34}, "status": "ok", "wall_seconds": 1.235}


def test_atomic_output_leaves_nothing_behind_when_interrupted(tmp_path):
    target = tmp_path / "articles.jsonl"
    with pytest.raises(KeyboardInterrupt):
        with course.atomic_output(target) as handle:
            handle.write('{"half": ')
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with course.atomic_output(target) as handle:
        handle.write("done\n")
    assert target.read_text() == "done\n" and list(tmp_path.iterdir()) == [target]


def test_missing_input_names_the_chapter_that_produces_it(tmp_path):
    with pytest.raises(course.MissingInputError) as error:
        course.require_input(tmp_path / "01_dump" / "articles.jsonl", produced_by="01_dump")
    assert "notebooks/01_dump_parsing.ipynb" in str(error.value) and "helpers.course" in str(error.value)



def test_every_chapter_output_is_found_through_one_table(tmp_path):
    for name, (chapter, relative) in course.OUTPUTS.items():
        assert chapter in course.CHAPTERS, name
        assert course.output_path(tmp_path, name) == tmp_path / chapter / relative
        with pytest.raises(course.MissingInputError, match=f"notebooks/{course.CHAPTERS[chapter]}.ipynb"):
            course.chapter_input(tmp_path, name)
    assert not list(tmp_path.iterdir()), "finding a path must not create folders"
    (tmp_path / "06_export" / "model").mkdir(parents=True)
    assert course.chapter_input(tmp_path, "onnx_model") == tmp_path / "06_export" / "model"
    with pytest.raises(ValueError, match="onnx_model"):
        course.output_path(tmp_path, "onnx")


def test_no_chapter_or_helper_spells_another_chapters_folder():
    """A path into a run's chapter folder is written once, in course.OUTPUTS (or chapter_dir for a chapter's own)."""
    spelled = re.compile(r'/ "0[0-8]_[a-z]+"')
    files = sorted((REPO_ROOT / "helpers").glob("*.py")) + sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.md"))
    found = [f"{path.name}:{number}: {line.strip()}" for path in files
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if spelled.search(line)]
    assert not found, "use course.output_path / course.chapter_input:\n" + "\n".join(found)

def test_unknown_profile_or_chapter_fails_at_once(tmp_path):
    with pytest.raises(UnknownProfileError, match="tiny"):
        course.run_course("huge", runs_root=tmp_path)
    with pytest.raises(ValueError, match="01_dump"):
        course.run_course("tiny", runs_root=tmp_path, from_chapter="09_nope")
    assert not (tmp_path / "huge").exists()


def _notebook(path, *sources):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell('profile = "tiny"\nrun_dir = None\noverrides = {}')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, *(nbformat.v4.new_code_cell(s) for s in sources)]
    nbformat.write(notebook, path)


def test_runner_records_time_saves_executed_notebooks_and_stops_at_a_failure(tmp_path):
    (first, first_nb), (second, second_nb), (third, third_nb) = list(course.CHAPTERS.items())[:3]
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(
        notebooks / f"{first_nb}.ipynb",
        "from helpers import course\nrun = course.resolve_run_dir(profile, run_dir)\n"
        f"course.record_chapter(run, {first!r}, metrics={{'articles_kept': 3}})",
    )
    _notebook(notebooks / f"{second_nb}.ipynb", "x = 1", "raise ValueError('no articles to clean')")
    _notebook(notebooks / f"{third_nb}.ipynb", "raise AssertionError('must not run after a failure')")

    with pytest.raises(RuntimeError) as error:
        course.run_course("tiny", runs_root=tmp_path / "runs", notebooks_dir=notebooks)
    message = str(error.value)
    assert second in message and "ValueError: no articles to clean" in message
    assert "cell [4] `raise ValueError('no articles to clean')`" in message  # [3]: papermill's injected cell

    summary = course.read_summary(tmp_path / "runs" / "tiny")
    ran, failed = summary["chapters"][first], summary["chapters"][second]
    assert ran["status"] == "ok" and ran["metrics"] == {"articles_kept": 3} and ran["wall_seconds"] > 0
    assert failed["status"] == "failed" and "no articles to clean" in failed["error"]
    assert third not in summary["chapters"]
    assert (tmp_path / "runs" / "tiny" / first / f"{first_nb}.executed.ipynb").exists()

    # resuming from the failed chapter skips what already ran
    _notebook(notebooks / f"{second_nb}.ipynb", "x = 1")
    _notebook(notebooks / f"{third_nb}.ipynb", "y = 2")
    summary = course.run_course(
        "tiny", runs_root=tmp_path / "runs", notebooks_dir=notebooks, from_chapter=second, only=[first, second, third]
    )
    assert [summary["chapters"][c]["status"] for c in (first, second, third)] == ["ok", "ok", "ok"]
    assert summary["chapters"][second]["error"] is None


def test_atomic_directory_replaces_a_folder_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("old")
    with pytest.raises(RuntimeError):
        with course.atomic_directory(target) as staging:
            (staging / "weights").write_text("half")
            raise RuntimeError("killed midway")
    assert (target / "weights").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with course.atomic_directory(target) as staging:
        (staging / "weights").write_text("new")
    assert (target / "weights").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_set_overrides_reach_every_notebook_and_unknown_keys_fail_first(tmp_path):
    assert course.parse_overrides(["finetune_max_steps=4", "export_dtypes=[\"q8\"]", "deploy_name=my-model"]) == {
        "finetune_max_steps": 4, "export_dtypes": ["q8"], "deploy_name": "my-model"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        course.parse_overrides(["finetune_max_steps"])
    first, first_nb = next(iter(course.CHAPTERS.items()))
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / f"{first_nb}.ipynb",
              "from helpers import course, profiles\nparams = profiles.get_profile(profile, overrides)\n"
              f"course.record_chapter(course.resolve_run_dir(profile, run_dir), {first!r}, "
              "metrics={'steps': params['finetune_max_steps']})")
    summary = course.run_course("laptop", runs_root=tmp_path / "runs", notebooks_dir=notebooks, only=[first],
                                overrides={"finetune_max_steps": 4})
    assert summary["chapters"][first]["metrics"] == {"steps": 4} and summary["overrides"] == {"finetune_max_steps": 4}
    with pytest.raises(KeyError, match="finetune_max_stepz"):
        course.run_course("laptop", runs_root=tmp_path / "other", notebooks_dir=notebooks, overrides={"finetune_max_stepz": 1})
    assert not (tmp_path / "other").exists()


def test_every_chapter_has_a_measured_time_for_the_tiny_and_laptop_profiles():
    times = json.loads(course.CHAPTER_TIMES.read_text(encoding="utf-8"))
    for profile in ("tiny", "laptop"):
        assert set(times[profile]["seconds"]) == set(course.CHAPTERS), profile
        assert all(seconds > 0 for seconds in times[profile]["seconds"].values())
    line = course.measured_time("05_finetune")
    assert "tiny " in line and "laptop " in line and times["laptop"]["machine"] in line


def test_each_chapter_prints_its_own_measured_time():
    for chapter, stem in course.CHAPTERS.items():
        text = (course.NOTEBOOKS_DIR / f"{stem}.md").read_text(encoding="utf-8")
        assert f'course.measured_time("{chapter}")' in text, f"{stem}.md does not print its measured time"


def test_recorded_times_come_from_a_complete_run_only(tmp_path):
    times = tmp_path / "times.json"
    complete = {"profile": "tiny", "chapters": {name: {"status": "ok", "wall_seconds": 61.04 + i}
                                                for i, name in enumerate(course.CHAPTERS)}}
    course.record_times(complete, "a test machine", times)
    stored = json.loads(times.read_text())["tiny"]
    assert stored["machine"] == "a test machine" and stored["seconds"]["00_primer"] == 61.0
    assert "tiny 64 s" in course.measured_time("03_pairs", times)  # 61.04 + 3, rounded
    course.record_times({"profile": "laptop", "chapters": {**complete["chapters"], "05_finetune": {
        "status": "ok", "wall_seconds": 445.4}}}, "a test machine", times)
    assert "tiny 66 s; laptop 7 min 25 s" in course.measured_time("05_finetune", times)
    partial = {"profile": "tiny", "chapters": {**complete["chapters"], "06_export": {"status": "failed", "wall_seconds": 3}}}
    with pytest.raises(ValueError, match="06_export"):
        course.record_times(partial, "a test machine", times)
    assert json.loads(times.read_text())["tiny"] == stored  # the complete run's times stay


def test_on_colab_the_run_folder_is_on_drive_where_every_chapter_finds_it(tmp_path, capsys):
    drive = tmp_path / "MyDrive"
    assert course.resolve_run_dir("colab", None, drive=drive) == drive / "corpus-to-client" / "runs" / "colab"
    assert "on Google Drive" in capsys.readouterr().out
    assert course.resolve_run_dir("colab", tmp_path / "mine", drive=drive) == tmp_path / "mine"  # papermill's run_dir wins
    assert course.resolve_run_dir("tiny") == REPO_ROOT / "runs" / "tiny"
    with pytest.raises(UnknownProfileError):
        course.resolve_run_dir("huge", None, drive=drive)


def _complete(run, chapter, *outputs):
    for name in outputs:
        path = course.output_path(run, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if not path.suffix else path.write_text("{}\n")
    course.record_chapter(run, chapter, metrics={"done": True})


def test_build_inputs_runs_only_the_chapters_a_chapter_is_missing(tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert course.missing_chapters(run, "05_finetune") == ["01_dump", "02_cleaning", "03_pairs", "04_model"]
    _complete(run, "01_dump", "articles")
    _complete(run, "02_cleaning", "clean_articles")
    assert course.missing_chapters(run, "05_finetune") == ["03_pairs", "04_model"]
    _complete(run, "03_pairs", "pairs", "train_pairs", "validation_pairs", "pairs_dataset")
    _complete(run, "04_model")  # a Hub model: chapter 04 writes no base folder, only its record
    assert course.missing_chapters(run, "05_finetune") == []
    (run / "02_cleaning" / "articles.jsonl").unlink()  # an output lost: that chapter and every later one again
    assert course.missing_chapters(run, "05_finetune") == ["02_cleaning", "03_pairs", "04_model"]
    course.record_chapter(run, "02_cleaning", status="failed")
    ran = []
    monkeypatch.setattr(course, "run_course", lambda profile, **kwargs: ran.append((profile, kwargs)))
    assert course.build_inputs("colab", run, before="04_model") == ["02_cleaning", "03_pairs"]
    assert ran == [("colab", {"run_dir": run, "only": ["02_cleaning", "03_pairs"], "overrides": None})]
    with pytest.raises(ValueError, match="05_fine"):
        course.missing_chapters(run, "05_fine")


def test_a_missing_input_names_its_chapter_and_the_one_call_that_builds_it(tmp_path):
    with pytest.raises(course.MissingInputError) as error:
        course.chapter_input(tmp_path, "finetuned_model")
    message = str(error.value)
    assert "produced by chapter 05_finetune" in message and "notebooks/05_fine_tuning.ipynb" in message
    assert "Google Drive" in message
    # The call builds through the chapter that makes the missing output, whichever chapter asks for it.
    assert 'course.build_inputs(profile, run, before="06_export")' in message
    for name, after in (("onnx_model", "07_deploy"), ("pairs", "04_model"), ("articles", "02_cleaning")):
        with pytest.raises(course.MissingInputError, match=f'before="{after}"'):
            course.chapter_input(tmp_path, name)
        assert course.missing_chapters(tmp_path, after)[-1] == course.OUTPUTS[name][0]


def test_the_runner_starts_kernels_with_transport_encryption_so_they_do_not_warn(tmp_path):
    """ipykernel >= 7.3 warns at every start over unencrypted TCP; the runner's kernel manager provisions keys."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell("print(6 * 7)"))
    nbformat.write(notebook, tmp_path / "in.ipynb")
    script = ("import papermill, sys; papermill.execute_notebook(sys.argv[1], sys.argv[2], kernel_name='python3', "
              "progress_bar=False, kernel_manager_class=sys.argv[3])")
    runs = {}
    for name in ("jupyter_client.manager.AsyncKernelManager", "helpers.course.EncryptedKernelManager"):
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), name],
                              cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        runs[name] = done.stderr
        assert nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs[0]["text"] == "42\n"
    assert "without encryption" in runs["jupyter_client.manager.AsyncKernelManager"]  # the warning this avoids
    assert "without encryption" not in runs["helpers.course.EncryptedKernelManager"]


# --- issue 13: resume, one runner per run folder, every failure recorded, OS errors in one line


def _one_notebook(folder, code: str) -> str:
    chapter, name = next(iter(course.CHAPTERS.items()))
    folder.mkdir(exist_ok=True)
    _notebook(folder / f"{name}.ipynb", code)
    return chapter


def test_resume_reaches_fine_tuning_and_plain_from_starts_it_afresh(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(course, "run_course", lambda profile, **kwargs: calls.append(kwargs) or
                        {"chapters": {}, "run_dir": str(tmp_path)})
    assert course.main(["--profile", "tiny", "--from", "05_finetune", "--resume", "--runs-root", str(tmp_path)]) == 0
    assert calls[-1]["overrides"] == {"finetune_resume": True} and calls[-1]["from_chapter"] == "05_finetune"
    assert course.main(["--profile", "tiny", "--from", "05_finetune", "--runs-root", str(tmp_path)]) == 0
    assert calls[-1]["overrides"] == {}  # --from alone: chapter 05 trains from the start (the README says so)
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "--from 05_finetune --resume" in readme and "trains from the start" in readme


def test_a_second_runner_on_one_run_folder_is_refused(tmp_path, lock_holder):
    notebooks = tmp_path / "notebooks"
    chapter = _one_notebook(notebooks, "x = 1")
    run_dir = tmp_path / "runs" / "tiny"
    pid = lock_holder(run_dir / "summary.json")
    with pytest.raises(course.OutputBusyError, match=f"process {pid} is running the course"):
        course.run_course("tiny", run_dir=run_dir, notebooks_dir=notebooks, only=[chapter])
    lock_holder.release()
    assert course.run_course("tiny", run_dir=run_dir, notebooks_dir=notebooks, only=[chapter])["chapters"][chapter]["status"] == "ok"


def test_an_interrupted_chapter_is_recorded_as_failed(tmp_path, monkeypatch):
    import papermill

    notebooks = tmp_path / "notebooks"
    chapter = _one_notebook(notebooks, "x = 1")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    with pytest.raises(KeyboardInterrupt):
        course.run_course("tiny", run_dir=tmp_path / "run", notebooks_dir=notebooks, only=[chapter])
    entry = course.read_summary(tmp_path / "run")["chapters"][chapter]
    assert entry["status"] == "failed" and "interrupted" in entry["error"]
    assert not (tmp_path / "run" / ".summary.json.lock").exists()


def test_an_os_error_ends_the_runner_with_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = subprocess.run([sys.executable, "-m", "helpers.course", "--profile", "tiny", "--runs-root", str(blocker / "runs")],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and "a-file" in done.stderr


def test_the_kernels_import_helpers_from_the_runners_checkout(tmp_path, monkeypatch):
    """Not from another copy that an editable install or PYTHONPATH points at (here: a decoy first on PYTHONPATH)."""
    decoy = tmp_path / "elsewhere" / "helpers"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise ImportError('the decoy helpers were imported')\n")
    monkeypatch.setenv("PYTHONPATH", str(decoy.parent))
    notebooks = tmp_path / "notebooks"
    chapter = _one_notebook(notebooks, f"import helpers, pathlib\nassert pathlib.Path(helpers.__file__).parent.parent == pathlib.Path({str(REPO_ROOT)!r}), helpers.__file__")
    summary = course.run_course("tiny", run_dir=tmp_path / "run", notebooks_dir=notebooks, only=[chapter])
    assert summary["chapters"][chapter]["status"] == "ok"
    assert os.environ["PYTHONPATH"] == str(decoy.parent)  # put back as it was


def test_a_full_disk_during_a_chapter_is_recorded_and_reported_in_one_line(tmp_path, monkeypatch, capsys):
    import errno

    import papermill

    notebooks = tmp_path / "notebooks"
    chapter = _one_notebook(notebooks, "x = 1")

    def disk_full(*args, **kwargs):  # what writing the executed notebook meets on a full disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(papermill, "execute_notebook", disk_full)
    monkeypatch.setattr(course, "run_course", functools.partial(course.run_course, notebooks_dir=notebooks, only=[chapter]))
    assert course.main(["--profile", "tiny", "--run-dir", str(tmp_path / "run")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: chapter") and "No space left on device" in error and "Traceback" not in error
    entry = course.read_summary(tmp_path / "run")["chapters"][chapter]
    assert entry["status"] == "failed" and "No space left on device" in entry["error"]


# A real full disk: the run folder on a small tmpfs, mounted in a private mount namespace (`unshare`,
# no root needed where user namespaces are allowed), the runner a real process writing to it.
RUN_ON_DISK = """import functools, sys
from helpers import course
course.run_course = functools.partial(course.run_course, notebooks_dir=sys.argv[2], only=[sys.argv[3]])
sys.exit(course.main(["--profile", "tiny", "--run-dir", sys.argv[1]]))
"""


def _on_a_small_disk(tmp_path, size: str, notebooks, chapter: str, *, between: str | None = None, read_only: bool = False):
    """Run the chapter with its run folder on a `size` tmpfs; with `between` (a shell command), run it
    once, run `between`, then run it again. Returns the last runner's result and a copy of the run folder."""
    unshare = shutil.which("unshare")
    disk, after = tmp_path / "disk", tmp_path / "after"
    disk.mkdir()
    runner = " ".join(shlex.quote(part) for part in
                      [sys.executable, "-c", RUN_ON_DISK, str(disk / "run"), str(notebooks), chapter])
    script = (f"mount -t tmpfs -o size={size}{',ro' if read_only else ''} tmpfs {shlex.quote(str(disk))} || exit 99\n"
              + (f"{runner} >/dev/null || exit 98\n{between}\n" if between else "")
              + f"{runner}\nrc=$?\ncp -a {disk}/run {after} 2>/dev/null\nexit $rc\n")
    done = subprocess.run([unshare, "--map-root-user", "--mount", "sh", "-c", script], cwd=REPO_ROOT,
                          capture_output=True, text=True) if unshare else None
    if done is None or done.returncode == 99:
        reason = f"cannot mount a small disk here ({'no unshare' if done is None else done.stderr.strip()})"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason + ": user namespaces are off on this machine (CI runs this test)")
    assert done.returncode != 98, done.stderr
    return done, after


def test_a_chapter_that_fills_the_disk_keeps_everything_complete_and_is_recorded(tmp_path):
    notebooks = tmp_path / "notebooks"
    chapter = _one_notebook(notebooks, "from pathlib import Path\nfrom helpers import course\n"
                                       "course.write_json(Path(run_dir) / 'kept.json', {'complete': True})\n"
                                       "with course.atomic_output(Path(run_dir) / 'big.bin', 'wb') as out:\n"
                                       "    out.write(b'x' * 3_000_000)  # more than the 2 MB disk holds")
    done, after = _on_a_small_disk(tmp_path, "2m", notebooks, chapter)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"error: chapter {chapter} failed" in done.stderr and "No space left on device" in done.stderr
    assert json.loads((after / "kept.json").read_text()) == {"complete": True}  # written before: untouched
    assert not (after / "big.bin").exists() and not list(after.rglob("*.partial*"))  # no half file, no leftovers
    entry = json.loads((after / "summary.json").read_text())["chapters"][chapter]
    assert entry["status"] == "failed" and "No space left on device" in entry["error"]
    executed = nbformat.read(next((after / chapter).glob("*.executed.ipynb")), as_version=4)
    assert executed.cells[-1].outputs[-1]["ename"] == "OSError"  # the record of the failing cell, whole


def test_a_run_on_a_full_disk_stops_in_one_line_and_keeps_the_last_complete_run(tmp_path):
    notebooks = tmp_path / "notebooks"
    chapter = _one_notebook(notebooks, "print('x' * 100)")
    fill = f"head -c 100000000 /dev/zero > {tmp_path / 'disk' / 'filler'} 2>/dev/null"
    done, after = _on_a_small_disk(tmp_path, "1m", notebooks, chapter, between=fill)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "no space left on the disk that holds the run folder" in error[0] and "df -h" in error[0]
    # the first run's records, complete, as they were: no truncated summary or executed notebook, no stray lock
    assert json.loads((after / "summary.json").read_text())["chapters"][chapter]["status"] == "ok"
    executed = nbformat.read(next((after / chapter).glob("*.executed.ipynb")), as_version=4)
    assert executed.cells[-1].outputs[0]["text"] == "x" * 100 + "\n"
    assert sorted(path.name for path in after.rglob("*")) == sorted([chapter, f"{course.CHAPTERS[chapter]}.executed.ipynb", "summary.json"])


def test_a_disk_that_fills_while_a_chapter_runs_leaves_the_last_complete_executed_notebook(tmp_path):
    """papermill saves the notebook after each cell; on a full disk that save fails half-way. It writes a
    partial, so the earlier run's executed notebook stays whole (it used to be left as truncated JSON)."""
    notebooks = tmp_path / "notebooks"
    chapter = _one_notebook(notebooks, "from pathlib import Path\nprint('x' * 100)\n"
                                       "if (Path(run_dir) / 'second-run').exists():  # a download that fills the disk\n"
                                       "    with open(Path(run_dir) / 'cache.bin', 'wb') as cache:\n"
                                       "        cache.write(b'x' * 3_000_000)")
    done, after = _on_a_small_disk(tmp_path, "1m", notebooks, chapter, between=f"touch {tmp_path / 'disk' / 'run' / 'second-run'}")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"error: chapter {chapter} failed" in done.stderr and "No space left on device" in done.stderr
    assert "The executed notebook could not be saved" in done.stderr and "is from an earlier run" in done.stderr
    executed = nbformat.read(next((after / chapter).glob("*.executed.ipynb")), as_version=4)  # whole JSON
    assert executed.cells[-1].outputs == [{"name": "stdout", "output_type": "stream", "text": "x" * 100 + "\n"}]
    assert not list(after.rglob("*.partial*"))


def test_a_run_folder_on_a_read_only_disk_stops_in_one_line(tmp_path):
    notebooks = tmp_path / "notebooks"
    chapter = _one_notebook(notebooks, "x = 1")
    done, after = _on_a_small_disk(tmp_path, "1m", notebooks, chapter, read_only=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and "Read-only file system" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not after.exists()  # nothing could be written, and nothing was
