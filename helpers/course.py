"""The course as a sequence: run folders, ``summary.json`` and the chapter runner.

A run lives in ``runs/<profile>/``: one subfolder per chapter (``01_dump/``, ``02_cleaning/``...)
and ``summary.json``, which records for every chapter that ran its status, wall seconds and key
metrics. The nightly reads its regressions from that file.

``python -m helpers.course --profile tiny`` executes the chapter notebooks in order with papermill,
saves each executed notebook in the run folder and stops at the first failure, naming it.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers.profiles import PROFILES, REPO_ROOT, get_profile

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"

# Chapter key -> notebook stem. The key names the chapter's folder in the run.
CHAPTERS: dict[str, str] = {
    "00_primer": "00_transformers_primer",
    "01_dump": "01_dump_parsing",
    "02_cleaning": "02_cleaning",
    "03_pairs": "03_pairing",
    "04_model": "04_model_choice",
    "05_finetune": "05_fine_tuning",
    "06_export": "06_onnx_export",
    "07_deploy": "07_browser_deploy",
    "08_troubleshooting": "08_troubleshooting",
}


# What a chapter hands to later ones: name -> (chapter, path inside the chapter's folder). The one
# place these paths are written: the chapter that makes an output and the chapters that read it both
# ask `output_path` / `chapter_input`, so a folder renamed here moves for all of them.
OUTPUTS: dict[str, tuple[str, str]] = {
    "primer_model": ("00_primer", "model"),
    "articles": ("01_dump", "articles.jsonl"),
    "clean_articles": ("02_cleaning", "articles.jsonl"),
    "pairs": ("03_pairs", "."),  # train.jsonl, validation.jsonl and test.jsonl
    "train_pairs": ("03_pairs", "train.jsonl"),
    "validation_pairs": ("03_pairs", "validation.jsonl"),
    "pairs_dataset": ("03_pairs", "dataset"),
    "tokenizer": ("03_pairs", "tokenizer"),
    "base_model": ("04_model", "base"),
    "finetuned_model": ("05_finetune", "model"),
    "finetune_metrics": ("05_finetune", "model/finetune_metrics.json"),
    "onnx_model": ("06_export", "model"),
}

def run_dir_for(profile: str, runs_root: Path | None = None) -> Path:
    """The run folder of ``profile`` (``runs/<profile>`` under the repository by default)."""
    get_profile(profile)  # fail at once on an unknown profile, listing the valid ones
    return (runs_root or REPO_ROOT / "runs") / profile


# Where a run lives on Google Drive: MyDrive/corpus-to-client/runs/<profile>. On Colab each notebook
# opened from its badge gets its own runtime, and Drive is what they share.
DRIVE_RUNS = Path("corpus-to-client") / "runs"


def resolve_run_dir(profile: str, run_dir: Path | str | None = None, *, drive: Path | str | None = None) -> Path:
    """A notebook's run folder, printed: ``run_dir`` when given (papermill passes it); else, with Google
    Drive mounted (``drive``: its ``MyDrive``), ``MyDrive/corpus-to-client/runs/<profile>``; else the
    profile's folder in the repository (``runs/<profile>``)."""
    if run_dir is not None:
        path = Path(run_dir)
    elif drive is not None:
        get_profile(profile)
        path = Path(drive) / DRIVE_RUNS / profile
    else:
        path = run_dir_for(profile)
    print(f"run folder: {path}" + (" (on Google Drive: every chapter's runtime finds it)" if drive is not None and run_dir is None else ""))
    return path


def chapter_dir(run_dir: Path | str, chapter: str) -> Path:
    """The folder of ``chapter`` inside ``run_dir``, created if needed."""
    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; chapters are {', '.join(CHAPTERS)}")
    path = Path(run_dir) / chapter
    path.mkdir(parents=True, exist_ok=True)
    return path


class MissingInputError(FileNotFoundError):
    """An input an earlier chapter should have produced is not there."""


def require_input(path: Path | str, produced_by: str, run_dir: Path | str | None = None) -> Path:
    """Return ``path`` if it exists, else say which chapter produces it and how to build it.

    With ``run_dir`` the message also gives the one call that builds the missing chapters into that
    run folder from the notebook itself (``build_inputs``).
    """
    path = Path(path)
    if not path.exists():
        notebook = CHAPTERS.get(produced_by, produced_by)
        how = (f"Run notebooks/{notebook}.ipynb first (on Colab: with the same Google Drive), or the whole course with "
               f"`python -m helpers.course --profile <profile>`")
        if run_dir is not None and produced_by in CHAPTERS:
            following = list(CHAPTERS)[list(CHAPTERS).index(produced_by) + 1]
            how += (f"; or, from this notebook, build what this run folder lacks, up to chapter {produced_by}, with one "
                    f"call: `course.build_inputs(profile, run, before=\"{following}\")` (it runs those chapters "
                    "here, as long as each takes on its own: their set-up cells print their measured times)")
        raise MissingInputError(f"{path} does not exist: it is produced by chapter {produced_by}. {how}")
    return path


def output_path(run_dir: Path | str, name: str) -> Path:
    """Where output ``name`` (a key of ``OUTPUTS``) lives in ``run_dir`` (nothing is created)."""
    if name not in OUTPUTS:
        raise ValueError(f"unknown chapter output {name!r}; outputs are {', '.join(OUTPUTS)}")
    chapter, relative = OUTPUTS[name]
    return Path(run_dir) / chapter / relative


def chapter_input(run_dir: Path | str, name: str) -> Path:
    """Output ``name`` of an earlier chapter, or ``MissingInputError`` naming the chapter that makes it."""
    return require_input(output_path(run_dir, name), produced_by=OUTPUTS[name][0], run_dir=run_dir)

def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_partial(path: Path | str) -> Path:
    """A new, uniquely named, empty file beside ``path`` (``.NAME.XXXX.partial``), readable like any file.

    Unique, so that two writers of one output never write into the same partial; 0644 under the usual
    umask (``mkstemp`` alone makes it 0600, and a web server running as another user could not read
    what lands in ``site/models/``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_umask())
    return Path(name)


@contextlib.contextmanager
def atomic_output(path: Path | str, mode: str = "w", **open_kwargs: Any) -> Iterator[Any]:
    """Open a temporary file beside ``path`` and move it into place only if the block succeeds.

    A chapter killed midway then leaves nothing half-written that a later run would trust.
    """
    path = Path(path)
    partial = new_partial(path)
    try:
        with open(partial, mode, **open_kwargs) as handle:
            yield handle
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise


class OutputBusyError(RuntimeError):
    """Another process is writing the same output (or running the same runs folder)."""


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@contextlib.contextmanager
def output_lock(path: Path | str, what: str = "writing") -> Iterator[Path]:
    """Hold ``.NAME.lock`` beside ``path`` (it records this process's PID) while the block runs.

    A second writer of the same output is refused with the holder's PID instead of interleaving
    with it; a lock left by a process that no longer runs is taken over.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                holder = int(lock.read_text(encoding="utf-8").strip() or 0)
            except (FileNotFoundError, ValueError):
                holder = 0
            if holder and holder != os.getpid() and _process_alive(holder):
                raise OutputBusyError(
                    f"{path}: process {holder} is {what} it now. Wait for it to finish or stop it "
                    f"(`kill {holder}`); if no such process runs, delete {lock}") from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # left by a process that ended without cleaning up
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:  # a full disk: no lock left behind without its holder's PID
        os.close(fd)
        lock.unlink()
        raise
    os.close(fd)
    try:
        yield lock
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


@contextlib.contextmanager
def atomic_directory(path: Path | str) -> Iterator[Path]:
    """Yield a staging folder beside ``path`` that replaces ``path`` only if the block succeeds.

    The folder counterpart of ``atomic_output``: a model, an export or a data install killed midway
    leaves the previous folder (or none), never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; what lands here is meant to be read like any folder
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    try:
        yield staging
        if path.exists():
            path.rename(old)
        staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path | str, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_output(path, encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False, sort_keys=False)
        handle.write("\n")
    return Path(path)


def read_summary(run_dir: Path | str) -> dict[str, Any]:
    """The run's ``summary.json`` as a dict (an empty summary when the run has none yet)."""
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        return {"chapters": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def record_chapter(
    run_dir: Path | str,
    chapter: str,
    *,
    metrics: dict[str, Any] | None = None,
    status: str | None = None,
    wall_seconds: float | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Merge a chapter's status, wall seconds and metrics into ``summary.json``; return its entry.

    Notebooks call this with their metrics; the runner calls it with status and wall time.
    """
    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; chapters are {', '.join(CHAPTERS)}")
    summary = read_summary(run_dir)
    entry = summary["chapters"].setdefault(chapter, {})
    if status is not None:
        entry["status"] = status
    if wall_seconds is not None:
        entry["wall_seconds"] = round(float(wall_seconds), 3)
    if metrics is not None:
        entry["metrics"] = metrics
    entry.update(fields)
    summary["chapters"] = {key: summary["chapters"][key] for key in CHAPTERS if key in summary["chapters"]}
    write_json(Path(run_dir) / "summary.json", summary)
    return entry


@functools.cache
def _encrypted_kernel_manager() -> type:
    """jupyter_client's kernel manager with transport encryption on where the kernel supports it.

    Since ipykernel 7.3 a kernel started over TCP without CurveZMQ keys warns on every start ("Kernel
    is running over TCP without encryption"); jupyter_client (>= 8.9) provisions the keys when asked,
    and ipykernel's kernelspec declares that it supports them.
    """
    from jupyter_client.manager import AsyncKernelManager

    class Encrypted(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("transport_encryption", "auto")
            super().__init__(**kwargs)

    return Encrypted


def __getattr__(name: str) -> Any:
    # papermill names the kernel manager class by import path; jupyter_client is imported only when a run starts.
    if name == "EncryptedKernelManager":
        return _encrypted_kernel_manager()
    raise AttributeError(name)


def run_course(
    profile: str,
    *,
    runs_root: Path | None = None,
    run_dir: Path | str | None = None,
    from_chapter: str | None = None,
    only: list[str] | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    log_output: bool = False,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Execute the chapter notebooks in order with papermill for ``profile``; return the summary.

    The run folder is ``run_dir`` when given, else ``runs_root/<profile>``. Executed notebooks are
    saved in each chapter's folder. ``from_chapter`` resumes on the artifacts of an earlier run;
    ``only`` keeps just those chapters. ``overrides`` replace profile values in every chapter (each
    notebook's ``overrides`` parameter; unknown keys fail at once). The first failure stops the run
    and raises, naming the notebook.
    """
    try:
        import papermill  # imported here: the helpers themselves do not need it
    except ImportError as error:
        raise ImportError("running chapters needs papermill: pip install -c constraints.txt -e '.[runner]' "
                          "(on Colab: pip install -c constraints-colab.txt -e '.[colab]', as the install cell does)") from error

    get_profile(profile, overrides)  # an unknown profile or key fails here, before any chapter runs
    run_dir = Path(run_dir) if run_dir is not None else run_dir_for(profile, runs_root)
    chapters = list(CHAPTERS)
    if from_chapter is not None:
        if from_chapter not in CHAPTERS:
            raise ValueError(f"unknown chapter {from_chapter!r}; chapters are {', '.join(CHAPTERS)}")
        chapters = chapters[chapters.index(from_chapter):]
    if only:
        chapters = [chapter for chapter in chapters if chapter in only]
    run_dir.mkdir(parents=True, exist_ok=True)
    # One runner per run folder: a second one would interleave its chapters with this one's.
    with output_lock(run_dir / "summary.json", what="running the course in the run folder of"), _kernels_import_this_checkout():
        summary = read_summary(run_dir)
        summary.update({"profile": profile, "run_dir": str(run_dir), "overrides": dict(overrides or {})})
        write_json(run_dir / "summary.json", summary)
        for chapter in chapters:
            _run_chapter(papermill, profile, run_dir, chapter, notebooks_dir, overrides, log_output)
    return read_summary(run_dir)


@contextlib.contextmanager
def _kernels_import_this_checkout() -> Iterator[None]:
    """The chapters' kernels import ``helpers`` from the checkout this runner runs from (REPO_ROOT put
    first on their PYTHONPATH), not from wherever an editable install last pointed."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *([previous] if previous else [])])
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = previous


def _run_chapter(papermill: Any, profile: str, run_dir: Path, chapter: str, notebooks_dir: Path | str,
                 overrides: dict[str, Any] | None, log_output: bool) -> None:
    notebook = Path(notebooks_dir) / f"{CHAPTERS[chapter]}.ipynb"
    executed = chapter_dir(run_dir, chapter) / f"{notebook.stem}.executed.ipynb"
    # papermill saves the notebook after every cell: into a partial, so that a kill or a full disk
    # never leaves a truncated executed notebook where the last complete one was. The partial sits in
    # the run folder, not the chapter's, whose listing the chapter may show.
    partial = run_dir / f".{executed.stem}.{os.getpid()}.partial.ipynb"
    print(f"[{profile}] {chapter}: running {notebook.name}", flush=True)
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(notebook),
            str(partial),
            parameters={"profile": profile, "run_dir": str(run_dir), "overrides": dict(overrides or {})},
            cwd=str(notebook.parent),
            log_output=log_output,
            progress_bar=False,
            kernel_name="python3",
            kernel_manager_class="helpers.course.EncryptedKernelManager",
        )
    except BaseException as error:  # papermill raises PapermillExecutionError with the cell; Ctrl-C too
        seconds = time.perf_counter() - started
        saved = _keep_executed(partial, executed)
        description = "interrupted (Ctrl-C)" if isinstance(error, KeyboardInterrupt) else _describe(error, executed if saved else None)
        with contextlib.suppress(OSError):  # a full disk must not hide the chapter's own error
            record_chapter(run_dir, chapter, status="failed", wall_seconds=seconds, error=description)
        if not isinstance(error, Exception):
            raise
        record = (f"The executed notebook, with the failing cell, is {executed}" if saved else
                  "The executed notebook could not be saved" + (f"; {executed} is from an earlier run" if executed.exists() else ""))
        raise RuntimeError(
            f"chapter {chapter} failed in {notebook} after {seconds:.1f}s: {description}\n{record}"
        ) from error
    os.replace(partial, executed)
    seconds = time.perf_counter() - started
    record_chapter(run_dir, chapter, status="ok", wall_seconds=seconds, error=None)
    print(f"[{profile}] {chapter}: ok in {seconds:.1f}s", flush=True)


def _keep_executed(partial: Path, executed: Path) -> bool:
    """Move a failed chapter's executed notebook into place if it was saved whole; drop it otherwise."""
    import nbformat

    try:
        nbformat.read(partial, as_version=4)
        os.replace(partial, executed)
        return True
    except Exception:  # missing, truncated by a full disk, or unreadable: never put in place
        with contextlib.suppress(OSError):
            partial.unlink()
        return False


# Outputs only some profiles make: 04's base folder is the tiny profile's stand-in (the other
# profiles load their base model from the Hub), 03's tokenizer folder the tiny profile's own BPE.
OPTIONAL_OUTPUTS = frozenset({"base_model", "tokenizer", "primer_model", "finetune_metrics"})


def chapter_complete(run_dir: Path | str, chapter: str) -> bool:
    """Whether ``chapter`` finished in ``run_dir``: it recorded itself in summary.json (its last cell)
    and every output later chapters need from it is there."""
    entry = read_summary(run_dir)["chapters"].get(chapter, {})
    if "metrics" not in entry or entry.get("status") == "failed":
        return False
    needed = [name for name, (c, _) in OUTPUTS.items() if c == chapter and name not in OPTIONAL_OUTPUTS]
    return all(output_path(run_dir, name).exists() for name in needed)


def missing_chapters(run_dir: Path | str, before: str) -> list[str]:
    """The chapters to run so that ``before`` finds its inputs: from the first earlier data or model
    chapter (01-06) that is not complete, every one up to ``before``."""
    if before not in CHAPTERS:
        raise ValueError(f"unknown chapter {before!r}; chapters are {', '.join(CHAPTERS)}")
    makers = [chapter for chapter in list(CHAPTERS)[: list(CHAPTERS).index(before)]
              if chapter not in ("00_primer", "07_deploy")]  # nothing later reads these two
    for position, chapter in enumerate(makers):
        if not chapter_complete(run_dir, chapter):
            return makers[position:]
    return []


def build_inputs(profile: str, run_dir: Path | str, before: str, overrides: dict[str, Any] | None = None) -> list[str]:
    """Run, into ``run_dir``, the earlier chapters whose outputs chapter ``before`` is missing; return them.

    The one call a chapter's missing-input message offers: on Colab, where each notebook has its own
    runtime, it rebuilds what this run folder (on Drive) lacks without opening each notebook.
    Nothing runs when every input is there.
    """
    chapters = missing_chapters(run_dir, before)
    if chapters:
        print(f"building {', '.join(chapters)} into {run_dir}", flush=True)
        run_course(profile, run_dir=run_dir, only=chapters, overrides=overrides)
    else:
        print(f"every input of {before} is in {run_dir}: nothing to build")
    return chapters


def _describe(error: BaseException, executed: Path | None = None) -> str:
    """One line naming the failing cell (as numbered in the executed notebook), its code and error."""
    name, value = getattr(error, "ename", type(error).__name__), getattr(error, "evalue", str(error))
    count = getattr(error, "exec_count", None)
    where = ""
    if count is not None:
        where = f"cell [{count}]"
        if executed is not None and executed.exists():
            import nbformat

            cells = nbformat.read(executed, as_version=4).cells
            failing = [c.source.strip() for c in cells if c.get("execution_count") == count and c.source.strip()]
            where += f" `{failing[0].splitlines()[0][:80]}`" if failing else ""
        where += ": "
    return f"{where}{name}: {value}"


# Each chapter's measured time per profile, from real runs (``--record-times``); the chapters print it.
CHAPTER_TIMES = REPO_ROOT / "benchmarks" / "chapter_times.json"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{int(seconds // 60)} min {round(seconds % 60):02d} s"


def measured_time(chapter: str, times_path: Path | str = CHAPTER_TIMES) -> str:
    """One line: how long ``chapter`` took on each measured profile, and where and when it was measured."""
    if chapter not in CHAPTERS:
        raise KeyError(f"unknown chapter {chapter!r}; chapters: {', '.join(CHAPTERS)}")
    times = json.loads(Path(times_path).read_text(encoding="utf-8"))
    parts = [f"{profile} {_duration(entry['seconds'][chapter])}" for profile, entry in times.items()
             if chapter in entry["seconds"]]
    sources = sorted({f"{entry['machine']}, {entry['measured']}" for entry in times.values()})
    return (f"Measured time of this chapter: {'; '.join(parts)} ({'; '.join(sources)}; "
            f"benchmarks/chapter_times.json). Your run's time goes to summary.json.")


def record_times(summary: dict[str, Any], machine: str, times_path: Path | str = CHAPTER_TIMES) -> Path:
    """Store the wall time of every chapter that ran ``ok`` in ``summary`` as its profile's measured times.

    Only a run that completed every chapter counts: a partial run would mix old and new numbers.
    """
    chapters = summary.get("chapters", {})
    failed = [name for name in CHAPTERS if chapters.get(name, {}).get("status") != "ok"]
    if failed:
        raise ValueError(f"--record-times needs a run of every chapter; not ok: {', '.join(failed)}")
    path = Path(times_path)
    times = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    times[summary["profile"]] = {
        "machine": machine,
        "measured": time.strftime("%Y-%m-%d"),
        "seconds": {name: round(chapters[name]["wall_seconds"], 1) for name in CHAPTERS},
    }
    return write_json(path, times)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` from the command line as a dict; a value is read as JSON when it parses, else kept as text."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: write it as KEY=VALUE, e.g. --set finetune_max_steps=4")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the course's chapters in order for a profile.")
    parser.add_argument("--profile", default="tiny", help=f"one of {', '.join(PROFILES)} (default: tiny)")
    parser.add_argument("--from", dest="from_chapter",
                        help=f"run from this chapter on, on the outputs earlier chapters left in the run folder "
                             f"({', '.join(CHAPTERS)}); 05_finetune then trains from the start unless --resume")
    parser.add_argument("--resume", action="store_true",
                        help="continue fine-tuning from the last complete checkpoint in the run folder (after a kill "
                             "or a disconnect); the same as --set finetune_resume=true")
    parser.add_argument("--runs-root", type=Path, help="where run folders go (default: runs/)")
    parser.add_argument("--run-dir", type=Path, help="the run folder itself (on Colab: the one on Google Drive, "
                                                     "MyDrive/corpus-to-client/runs/<profile>, that the notebooks use)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change one profile value for this run (VALUE is JSON, else a string); repeatable, "
                             "e.g. --set finetune_max_steps=4")
    parser.add_argument("--record-times", metavar="MACHINE",
                        help="after a complete run, store its chapter times in benchmarks/chapter_times.json "
                             "(what the chapters print), described as MACHINE, e.g. '2-core CPU'")
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.overrides)
        if args.resume:
            overrides["finetune_resume"] = True
        if args.record_times and (overrides or args.from_chapter):
            raise ValueError("--record-times measures the profile as it is: run every chapter, without --set or --from")
        summary = run_course(args.profile, runs_root=args.runs_root, run_dir=args.run_dir,
                             from_chapter=args.from_chapter, overrides=overrides)
        for chapter, entry in summary["chapters"].items():
            print(f"{chapter:12s} {entry.get('status', '?'):7s} {entry.get('wall_seconds', 0):7.1f}s")
        print(f"summary: {Path(summary['run_dir']) / 'summary.json'}")
        if args.record_times:
            print(f"times: {record_times(summary, args.record_times)}")
    except OSError as error:  # a read-only folder, no permission, a full disk: one line, not a traceback
        print(f"error: {_describe_os_error(error, args.run_dir or (args.runs_root or REPO_ROOT / 'runs') / args.profile)}",
              file=sys.stderr)
        return 1
    except (ValueError, KeyError, TypeError, RuntimeError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _describe_os_error(error: OSError, run_dir: Path) -> str:
    """An OS error the runner met outside a chapter, with the file when known and what to do."""
    if error.errno != errno.ENOSPC:
        return str(error)
    where = f" writing {error.filename}" if error.filename else ""
    return (f"no space left on the disk that holds the run folder {run_dir}{where}. Nothing complete was "
            f"replaced. Free some space (`df -h {run_dir}` shows what is left), then run the same command again.")


if __name__ == "__main__":
    sys.exit(main())
