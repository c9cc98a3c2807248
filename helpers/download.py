"""Downloading a dump (or its index) once, resumably, into the run folder.

``download`` writes to ``<dest>.partial`` and resumes it with an HTTP ``Range`` request after an
interruption; ``local_source`` turns a profile's dump source (a URL or a path) into a local file.
Both are importable from ``helpers.dump`` too.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from helpers.pages import READ_CHUNK_BYTES, WIKIMEDIA_MIRRORS, DownloadError


def download(url: str, dest: Path | str, *, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``, resuming a previous partial download; return ``dest``.

    The bytes go to ``dest.partial`` first and move into place only once complete, so a file at
    ``dest`` is always whole (and is not downloaded again). An unreachable host raises
    ``DownloadError`` naming the URL and pointing at Wikimedia's mirrors.
    """
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "corpus-to-client course"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the partial file already holds every byte
            os.replace(partial, dest)
            return dest
        raise DownloadError(
            f"{url}: the server answered HTTP {error.code} ({error.reason}). Check the URL, or try a "
            f"mirror of the dumps (list: {WIKIMEDIA_MIRRORS}) and put the file at {dest}.",
            path=dest,
        ) from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(
            f"{url}: cannot reach the host ({reason}). Check your connection, or download the file from "
            f"a mirror of the dumps (list: {WIKIMEDIA_MIRRORS}) and put it at {dest}.",
            path=dest,
        ) from error
    with response:
        resumed = response.status == 206
        mode = "ab" if resumed else "wb"  # a server that ignores Range sends the whole file again
        length = response.headers.get("Content-Length")
        total = (int(length) + (have if resumed else 0)) if length else None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=have if resumed else 0, unit="B", unit_scale=True,
                       desc=f"downloading {dest.name}")
        try:
            with open(partial, mode) as handle:
                while chunk := response.read(READ_CHUNK_BYTES):
                    handle.write(chunk)
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
    os.replace(partial, dest)
    return dest


def local_source(source: str | Path, download_dir: Path | str) -> Path:
    """A profile's dump source as a local file: a URL is downloaded (resumably) into ``download_dir``."""
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        name = urllib.parse.urlparse(source).path.rsplit("/", 1)[-1]
        return download(source, Path(download_dir) / name)
    return Path(source)
