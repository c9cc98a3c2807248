"""Downloading a dump (or its index) once, resumably and verified, into the run folder.

``download`` writes to ``<dest>.partial`` beside a record of what it is fetching
(``<dest>.partial.json``: the URL and the server's ``ETag`` / ``Last-Modified``). After an
interruption it resumes with ``Range`` *and* ``If-Range``: the server sends the rest only while the
file is still the same one, else the whole new file. A ``.partial`` without that record (another
tool's, or one for another URL) proves nothing about what it holds: it is deleted and the download
starts over.

A complete file is checked against the SHA-1 sums Wikimedia publishes beside every dump
(``<wiki>-<date>-sha1sums.txt``). A mismatch moves it to ``<dest>.corrupt`` and raises, so the next
run downloads it again; a match writes ``<dest>.sha1``. A file already at ``dest`` without that
record (copied by hand, or left by an older version) is checked before it is trusted. Where no sums
are published (another host, a mirror without them) the download says it could not verify.

``local_source`` turns a profile's dump source (a URL or a path) into a local file. Both are
importable from ``helpers.dump`` too.
"""
from __future__ import annotations

import bz2
import hashlib
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from helpers.pages import READ_CHUNK_BYTES, WIKIMEDIA_MIRRORS, DownloadError

USER_AGENT = "corpus-to-client course"
# .../simplewiki/latest/simplewiki-latest-pages-articles-multistream.xml.bz2 (or a dated folder)
DUMP_PATH = re.compile(r"^(?P<folder>.*/)(?P<wiki>[a-z0-9_]+)-(?P<date>latest|\d{8})-(?P<file>[^/]+)$")


def checksums_url(url: str) -> str | None:
    """The URL of the SHA-1 sums published beside a Wikimedia dump file, or None for another layout."""
    parts = urllib.parse.urlsplit(url)
    match = DUMP_PATH.match(parts.path)
    if not match:
        return None
    path = f"{match['folder']}{match['wiki']}-{match['date']}-sha1sums.txt"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def published_sha1(url: str, *, timeout: float = 60.0) -> str | None:
    """The SHA-1 Wikimedia publishes for the dump file at ``url``, or None when there is none to read.

    The sums file names each file with the dump's date (``simplewiki-20261101-...``), also in the
    ``latest/`` folder, whose files are named ``simplewiki-latest-...``: the date part is matched loosely.
    """
    sums = checksums_url(url)
    if sums is None:
        return None
    match = DUMP_PATH.match(urllib.parse.urlsplit(url).path)
    try:
        request = urllib.request.Request(sums, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return None
    wanted = re.compile(rf"^([0-9a-f]{{40}})\s+\*?{re.escape(match['wiki'])}-(?:latest|\d{{8}})-{re.escape(match['file'])}$")
    for line in text.splitlines():
        found = wanted.match(line.strip())
        if found:
            return found.group(1)
    return None


def sha1_of(path: Path | str) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(url: str, path: Path, dest: Path, timeout: float) -> None:
    """Check ``path`` (the complete download, or a file found at ``dest``) against the published SHA-1."""
    expected = published_sha1(url, timeout=timeout)
    record = dest.with_name(dest.name + ".sha1")
    if expected is None:
        print(f"note: no published SHA-1 for {url} could be read ({checksums_url(url) or 'not a Wikimedia dump path'}): "
              f"{dest.name} is used unverified")
        record.write_text(f"unverified  {dest.name}\n", encoding="utf-8")
        return
    actual = sha1_of(path)
    if actual != expected:
        corrupt = dest.with_name(dest.name + ".corrupt")
        os.replace(path, corrupt)
        record.unlink(missing_ok=True)
        raise DownloadError(
            f"{dest.name}: SHA-1 {actual} is not the {expected} Wikimedia publishes ({checksums_url(url)}). The "
            f"file is corrupt, or the dump was replaced on the server while it downloaded; it was moved to "
            f"{corrupt.name}. Run again to download it afresh.", path=dest)
    record.write_text(f"{actual}  {dest.name}\n", encoding="utf-8")


def _mirror_advice(url: str, dest: Path, *, sample: bool) -> str:
    """What to do when the dumps' host fails: a whole file can be put in place by hand; a sample is cut by
    this course from a URL, so the profile must point at a mirror's copy of the same files instead."""
    name = urllib.parse.urlparse(url).path.rsplit("/", 1)[-1]
    if not sample:
        return f"download {name} from a mirror of the dumps (list: {WIKIMEDIA_MIRRORS}) and put it at {dest}."
    return (f"take the dump from a mirror of the dumps (list: {WIKIMEDIA_MIRRORS}): in chapter 01's parameters cell, "
            f"overrides = {{\"dump_source\": \"<the mirror's URL of {name}>\", \"dump_index_source\": \"<its URL of "
            f"the -index.txt.bz2 beside it>\"}}, then run the chapter again (a file put at {dest.name} by hand is not "
            f"used: the course cuts that sample itself).")


def download(url: str, dest: Path | str, *, progress: bool = True, timeout: float = 60.0,
             length: int | None = None, finish: Any = None) -> Path:
    """Download ``url`` to ``dest``, resuming a previous partial download of the same file; return ``dest``.

    The bytes go to ``dest.partial`` first and move into place only once complete and verified, so a
    file at ``dest`` with its ``.sha1`` record is whole (and is not downloaded again). An unreachable
    host raises ``DownloadError`` naming the URL and pointing at Wikimedia's mirrors.

    ``length``: only the file's first ``length`` bytes (``download_sample``); no published sum covers
    those, so ``finish(partial)`` checks them instead and may complete the file before it moves into place.
    """
    dest = Path(dest)
    if dest.exists():
        if not dest.with_name(dest.name + ".sha1").exists() and length is None:
            _verify(url, dest, dest, timeout)  # found here without our record: check it before trusting it
        if dest.with_name(dest.name + ".sha1").exists():
            return dest
        dest.unlink()  # a sample without its record is not one this course finished: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    record_path = dest.with_name(dest.name + ".partial.json")
    record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.exists() else {}
    if partial.exists() and (record.get("url") != url or record.get("length") != length
                             or not (record.get("etag") or record.get("last_modified"))):
        print(f"note: {partial.name} was not started by this download of {url} (no record of it): starting over")
        partial.unlink()
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if length is not None and have >= length:
        have = 0  # nothing left to ask for: a partial that long is not one of ours
        partial.unlink()
    if have or length is not None:
        request.add_header("Range", f"bytes={have}-{'' if length is None else length - 1}")
    if have:
        request.add_header("If-Range", record.get("etag") or record["last_modified"])
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the partial file already holds every byte
            os.replace(partial, dest)
            record_path.unlink(missing_ok=True)
            _verify(url, dest, dest, timeout)
            return dest
        raise DownloadError(
            f"{url}: the server answered HTTP {error.code} ({error.reason}). Check the URL, or "
            + _mirror_advice(url, dest, sample=length is not None), path=dest,
        ) from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(
            f"{url}: cannot reach the host ({reason}). Check your connection, or "
            + _mirror_advice(url, dest, sample=length is not None), path=dest,
        ) from error
    with response:
        # 206: the rest of the same file. 200: the whole file (a server that ignores Range, or one whose
        # file changed since the partial began: If-Range said so), written from the start.
        resumed = response.status == 206 and have > 0
        if not resumed:
            have = 0
            record = {"url": url, "length": length, "etag": response.headers.get("ETag"),
                      "last_modified": response.headers.get("Last-Modified")}
            record_path.write_text(json.dumps(record), encoding="utf-8")
        mode = "ab" if resumed else "wb"
        sent = response.headers.get("Content-Length")
        total = length if length is not None else (int(sent) + have) if sent else None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=have if resumed else 0, unit="B", unit_scale=True,
                       desc=f"downloading {dest.name}")
        try:
            with open(partial, mode) as handle:
                size = have
                # a server that ignored Range sends the whole file: read no more than the sample's bytes
                while (length is None or size < length) and (
                        chunk := response.read(READ_CHUNK_BYTES if length is None else min(READ_CHUNK_BYTES, length - size))):
                    handle.write(chunk)
                    size += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        except OSError as error:
            raise DownloadError(
                f"{url}: the download broke off after {partial.stat().st_size:,} bytes ({error}). Run "
                "again to resume it.", path=dest,
            ) from error
        finally:
            if bar is not None:
                bar.close()
    if total is not None and partial.stat().st_size < total:
        raise DownloadError(
            f"{url}: got {partial.stat().st_size:,} of {total:,} bytes. Run again to resume the download.",
            path=dest,
        )
    if length is None:
        _verify(url, partial, dest, timeout)  # a corrupt file goes to .corrupt, never to dest
    else:
        finish(partial)  # raises on bytes that are not what the index says; else completes the sample
        dest.with_name(dest.name + ".sha1").write_text(f"sample  the first {length:,} bytes of {url}\n", encoding="utf-8")
    os.replace(partial, dest)
    record_path.unlink(missing_ok=True)
    return dest


# The last stream of a multistream dump closes the XML; a sample of the first streams gets its own.
CLOSING_STREAM = bz2.compress(b"</mediawiki>\n")


def _sample_name(name: str, pages: int) -> str:
    stem, dot, rest = name.partition(".")
    return f"{stem}.first-{pages}-pages.{rest}" if dot else f"{name}.first-{pages}-pages"


def download_sample(dump_url: str, index_url: str, download_dir: Path | str, pages: int, *,
                    progress: bool = True, timeout: float = 60.0) -> tuple[Path, Path]:
    """The first ``pages`` pages of a multistream dump, as a multistream dump of their own with its index.

    Only those bytes are downloaded. A multistream dump is a run of independent bz2 streams (the XML
    header, then 100 pages each, then the closing tag) and its index says where each stream starts,
    so the first streams are simply the file's first bytes: one ``Range`` request (resumable like
    ``download``). The index is downloaded whole and checked against Wikimedia's sums; the sample is
    checked against it (a bz2 stream must start at every offset it lists), closed with a stream of
    its own, and given an index of just its pages. Returns ``(dump, index)``; when ``pages`` covers the
    whole dump, the whole dump and its index.
    """
    download_dir = Path(download_dir)
    index_name = urllib.parse.urlparse(index_url).path.rsplit("/", 1)[-1]
    full_index = download(index_url, download_dir / index_name, progress=progress, timeout=timeout)
    with bz2.open(full_index, "rt", encoding="utf-8") as handle:
        rows = [line for line in handle if line.strip()]
    per_stream: dict[int, int] = {}
    for line in rows:
        offset = int(line.split(":", 1)[0])
        per_stream[offset] = per_stream.get(offset, 0) + 1
    offsets = sorted(per_stream)
    end, counted = None, 0
    for position, offset in enumerate(offsets):
        counted += per_stream[offset]
        if counted >= pages:
            end = offsets[position + 1] if position + 1 < len(offsets) else None
            break
    dump_name = urllib.parse.urlparse(dump_url).path.rsplit("/", 1)[-1]
    if end is None:  # the sample would be the whole dump
        return download(dump_url, download_dir / dump_name, progress=progress, timeout=timeout), full_index
    starts = [0] + [offset for offset in offsets if offset < end]

    def finish(partial: Path) -> None:
        with open(partial, "rb") as handle:
            for offset in starts:
                handle.seek(offset)
                if handle.read(3) != b"BZh":
                    raise DownloadError(
                        f"{dump_url}: no bz2 stream starts at byte {offset:,}, where the index says one does: the "
                        f"index is not this dump's (the dump changed on the server?). Delete {download_dir} and run again.",
                        path=partial)
        with open(partial, "ab") as handle:
            handle.write(CLOSING_STREAM)

    sample = download(dump_url, download_dir / _sample_name(dump_name, pages), progress=progress, timeout=timeout,
                      length=end, finish=finish)
    sample_index = download_dir / _sample_name(index_name, pages)
    if not sample_index.exists():
        staging = sample_index.with_name(sample_index.name + ".partial")
        staging.write_bytes(bz2.compress("".join(line for line in rows if int(line.split(":", 1)[0]) < end).encode("utf-8")))
        os.replace(staging, sample_index)
    return sample, sample_index


def local_source(source: str | Path, download_dir: Path | str) -> Path:
    """A profile's dump source as a local file: a URL is downloaded (resumably, verified) into ``download_dir``."""
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        name = urllib.parse.urlparse(source).path.rsplit("/", 1)[-1]
        return download(source, Path(download_dir) / name)
    return Path(source)
