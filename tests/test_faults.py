"""Nothing lost under bad input and faults (issue 13): each case ends either with the valid data kept,
or with a message naming the file, the stage and what to do, and nothing complete touched."""
from __future__ import annotations

import gzip
import os
import stat
import subprocess
import sys

import pytest

from helpers import course, dump
from helpers.profiles import REPO_ROOT


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- 1. a failed parse never replaces a complete output -------------------------------------------


def test_a_failed_parse_leaves_the_complete_output_as_it_was(tmp_path, tiny_dump, tiny_articles):
    out = tmp_path / "a.jsonl"
    dump.dump_to_jsonl(tiny_dump, out)
    complete = out.read_bytes()
    assert len(dump.read_jsonl(out)) == len(tiny_articles)
    half = tmp_path / "half.xml.bz2"
    half.write_bytes(tiny_dump.read_bytes()[: tiny_dump.stat().st_size * 9 // 10])
    with pytest.raises(dump.DumpError) as caught:
        dump.dump_to_jsonl(half, out)
    assert out.read_bytes() == complete  # the complete file, byte for byte
    assert "the earlier complete file is still there" in str(caught.value)
    salvaged = dump.read_jsonl(dump.salvage_path(out))  # what was read before the fault, kept apart
    assert 0 < len(salvaged) < len(tiny_articles) and salvaged == tiny_articles[: len(salvaged)]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".partial", ".lock"))]


# --- 2. the format is sniffed before parsing --------------------------------------------------------


@pytest.mark.parametrize("name,content,words", [
    ("feed.xml", b'<?xml version="1.0"?>\n<rss><channel><item>x</item></channel></rss>\n', "not a MediaWiki export"),
    ("notes.xml", b"Albedo is the fraction of light a surface reflects.\n", "not XML"),
    ("page.xml.bz2", b"<html><body>404 Not Found</body></html>\n", "named .bz2 but holds no bz2 data"),
])
def test_input_that_is_not_a_mediawiki_dump_is_refused_by_what_it_is(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "out.jsonl"
    with pytest.raises(dump.DumpError, match=words) as caught:
        dump.dump_to_jsonl(path, out)
    assert name in str(caught.value) and not out.exists()


def test_gzip_input_is_named_as_gzip_with_the_way_out(tmp_path, tiny_xml):
    path = tmp_path / "dump.xml.gz"
    path.write_bytes(gzip.compress(tiny_xml))
    with pytest.raises(dump.DumpError, match="gzip-compressed") as caught:
        dump.dump_to_jsonl(path, tmp_path / "out.jsonl")
    assert "gunzip -k dump.xml.gz" in str(caught.value) and "malformed" not in str(caught.value)


def test_bz2_data_that_is_not_xml_is_refused(tmp_path):
    import bz2

    path = tmp_path / "text.xml.bz2"
    path.write_bytes(bz2.compress(b"just some text, compressed\n" * 10))
    with pytest.raises(dump.DumpError, match="decompressed data is not XML"):
        dump.dump_to_jsonl(path, tmp_path / "out.jsonl")


# --- 3. two writers of one output -------------------------------------------------------------------

HOLD = ("import sys, time; from helpers import course\n"
        "with course.output_lock(sys.argv[1]):\n"
        "    print('held', flush=True); time.sleep(60)\n")


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, tiny_dump):
    out = tmp_path / "a.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(course.OutputBusyError, match=f"process {holder.pid} is writing"):
            dump.dump_to_jsonl(tiny_dump, out)
        cli = subprocess.run([sys.executable, "-m", "helpers.dump", str(tiny_dump), "-o", str(out), "--no-progress"],
                             cwd=REPO_ROOT, capture_output=True, text=True)
        assert cli.returncode == 1 and f"process {holder.pid}" in cli.stderr and "Traceback" not in cli.stderr
    finally:
        holder.kill()
        holder.wait()
    assert not out.exists()
    dump.dump_to_jsonl(tiny_dump, out)  # the holder died without cleaning up: its lock is taken over
    assert out.exists() and not (tmp_path / ".a.jsonl.lock").exists()


def test_partial_files_are_unique_per_writer(tmp_path):
    first, second = course.new_partial(tmp_path / "a.jsonl"), course.new_partial(tmp_path / "a.jsonl")
    assert first != second and first.name.startswith(".a.jsonl.") and first.name.endswith(".partial")


# --- 4. input == output -----------------------------------------------------------------------------


def test_writing_over_the_dump_itself_is_refused(tmp_path, tiny_dump):
    copy = tmp_path / "dump.xml.bz2"
    copy.write_bytes(tiny_dump.read_bytes())
    original = copy.read_bytes()
    (tmp_path / "link.jsonl").symlink_to(copy)
    for out in (copy, tmp_path / "link.jsonl", tmp_path / "sub" / ".." / "dump.xml.bz2"):
        with pytest.raises(dump.DumpError, match="the output is the dump itself"):
            dump.dump_to_jsonl(copy, out)
    assert copy.read_bytes() == original


# --- 8. files readable by a web server running as another user --------------------------------------


def test_outputs_are_written_0644_and_folders_0755(tmp_path, tiny_dump):
    previous = os.umask(0o022)
    try:
        with course.atomic_output(tmp_path / "a.json") as handle:
            handle.write("{}")
        with course.atomic_directory(tmp_path / "model") as staging:
            (staging / "config.json").write_text("{}")
        dump.dump_to_jsonl(tiny_dump, tmp_path / "articles.jsonl")
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "a.json") == 0o644 and _mode(tmp_path / "articles.jsonl") == 0o644
    assert _mode(tmp_path / "model") == 0o755 and _mode(tmp_path / "model" / "config.json") == 0o644
