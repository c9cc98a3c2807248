"""Chapter 01: dump parsing, on the real pages of the tiny corpus."""
from __future__ import annotations

import bz2
import hashlib
import html
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
import tracemalloc
from pathlib import Path

import pytest

from helpers import dump
from helpers.profiles import REPO_ROOT

# --- the raw dump, read without the parser, to check the parser against -----------------------


@pytest.fixture(scope="session")
def raw_pages(tiny_xml) -> list[bytes]:
    return re.findall(rb"  <page>\n.*?  </page>\n", tiny_xml, re.S)


def raw_wikitext(raw_pages: list[bytes], title: str) -> str:
    page = next(page for page in raw_pages if f"<title>{title}</title>".encode() in page)
    return re.search(rb"<text[^>]*>(.*?)</text>", page, re.S).group(1).decode()


def by_title(articles: list[dict]) -> dict[str, dict]:
    return {article["title"]: article for article in articles}


def section(article: dict, heading: str) -> dict:
    return next(section for section in article["sections"] if section["heading"] == heading)


# --- counts ------------------------------------------------------------------------------------


def test_counts_match_what_the_raw_dump_holds(tiny_dump, raw_pages):
    redirects = sum(b"<redirect" in page for page in raw_pages)
    disambiguation_titles = {"Alien", "Austin (disambiguation)", "Ada", "Aberdeen (disambiguation)"}
    for title in disambiguation_titles:  # each really carries a {{disambiguation...}} template
        assert re.search(r"\{\{disambiguation", raw_wikitext(raw_pages, title), re.I)
    stats = dump.DumpStats()
    articles = list(dump.iter_articles(tiny_dump, stats=stats))

    assert (len(raw_pages), redirects) == (118, 82)
    assert stats.pages_read == len(raw_pages)
    assert stats.skipped == {"redirect": 82, "disambiguation": 4, "namespace": 0, "empty": 0}
    assert stats.articles_kept == len(articles) == 118 - 82 - 4
    assert not disambiguation_titles & set(by_title(articles))
    assert stats.as_dict()["skipped_redirect"] == 82
    assert stats.characters_kept == sum(len(s["text"]) for a in articles for s in a["sections"])


def test_flags_keep_redirects_and_disambiguation_pages(tiny_dump):
    stats = dump.DumpStats()
    articles = list(dump.iter_articles(tiny_dump, skip_redirects=False, skip_disambiguation=False, stats=stats))
    titles = set(by_title(articles))
    assert {"Alien", "Ada", "Austin (disambiguation)", "AccessibleComputing"} <= titles
    assert stats.skipped["redirect"] == stats.skipped["disambiguation"] == 0
    assert len(articles) == 118


def test_max_articles_stops_early(tiny_dump, tiny_articles):
    stats = dump.DumpStats()
    sample = list(dump.iter_articles(tiny_dump, max_articles=5, stats=stats))
    assert sample == tiny_articles[:5]
    assert stats.articles_kept == 5 and stats.pages_read < 118


# --- article structure on real pages -----------------------------------------------------------


def test_andorra_sections_levels_and_url(tiny_articles):
    andorra = by_title(tiny_articles)["Andorra"]
    assert andorra["id"] == 600
    assert andorra["url"] == "https://en.wikipedia.org/wiki/Andorra"
    lead = andorra["sections"][0]
    assert (lead["heading"], lead["level"]) == ("", 1)
    assert lead["text"].startswith("Andorra, officially the Principality of Andorra")
    levels = {s["heading"]: s["level"] for s in andorra["sections"]}
    assert levels["History"] == 2 and levels["17th to 19th centuries"] == 3
    assert levels["Police Corps"] == 3  # written "=== Police Corps ===", spaces inside the marks
    assert levels["Virtual Studies Centre"] == 4
    assert not {"See also", "References", "External links"} & set(levels)
    # "Statistics" holds only a table: with tables removed it is empty and dropped
    assert "Statistics" not in levels


def test_url_is_quoted_with_underscores(tiny_articles):
    articles = by_title(tiny_articles)
    assert articles["An American in Paris"]["url"] == "https://en.wikipedia.org/wiki/An_American_in_Paris"
    assert articles["Animalia (book)"]["url"] == "https://en.wikipedia.org/wiki/Animalia_(book)"
    assert dump.page_url("https://en.wikipedia.org/wiki/", "AT&T Corp?") == \
        "https://en.wikipedia.org/wiki/AT%26T_Corp%3F"


def test_albedo_links_quotes_files_and_entities(tiny_articles, raw_pages):
    raw = raw_wikitext(raw_pages, "Albedo")
    # what the raw page holds, so the assertions below are about real markup
    assert "[[diffuse reflection|diffuse reflectivity]]" in raw and "[[Latin]]" in raw
    assert "[[File:water reflectivity.jpg|thumb|right|250px|Reflectivity" in raw
    assert "&amp;nbsp;" in raw and "[[Category:Climatology]]" in raw

    albedo = by_title(tiny_articles)["Albedo"]
    text = dump.article_text(albedo)
    lead = albedo["sections"][0]["text"]
    assert "derived from Latin albedo \"whiteness\"" in lead
    assert "is the diffuse reflectivity or reflecting power" in lead
    assert "diffuse reflection" not in lead  # the link target, not shown to a reader
    assert "Reflectivity of smooth water" not in text  # an image caption
    assert "Climatology" not in text and "&nbsp;" not in text and "nbsp" not in text
    assert "IPA" not in lead and "'''" not in text
    assert "Terrestrial albedo" in {s["heading"] for s in albedo["sections"]}


def test_lists_are_kept_one_item_per_line(tiny_articles):
    huxley = by_title(tiny_articles)["Aldous Huxley"]
    novels = section(huxley, "Novels")
    assert novels["level"] == 3
    assert novels["text"].split("\n")[:2] == ["1921 Crome Yellow", "1923 Antic Hay"]
    assert "*" not in novels["text"]


def test_sections_are_paragraphs_separated_by_one_blank_line(tiny_articles):
    empty_parents = 0
    for article in tiny_articles:
        sections = article["sections"]
        for position, sec in enumerate(sections):
            assert sec["text"] == sec["text"].strip()
            assert "\n\n\n" not in sec["text"]
            if not sec["text"]:  # an empty section survives only as the parent of kept subsections
                empty_parents += 1
                assert position + 1 < len(sections) and sections[position + 1]["level"] > sec["level"]
    assert empty_parents > 0  # Andorra's "Geography" is one


# --- wikitext rules, one by one ----------------------------------------------------------------


def test_nested_templates_and_infobox_are_removed_in_one_piece(raw_pages):
    raw = html.unescape(raw_wikitext(raw_pages, "Andorra"))  # the wikitext, as the XML parser hands it over
    assert "{{Infobox country" in raw and "{{small|{{native name|ca|" in raw  # three levels deep
    lead = dump.parse_wikitext(raw)[0]["text"]
    assert lead.startswith("Andorra, officially the Principality of Andorra")
    assert "conventional_long_name" not in lead and "Principat d'Andorra" not in lead


@pytest.mark.parametrize(
    ("wikitext", "expected"),
    [
        ("A{{outer|{{inner|x}}|y}}B", "AB"),
        ("a<ref name=\"x\">{{cite web|url=u}} text</ref> b<ref name=\"y\"/>.", "a b."),
        ("see [[File:X.jpg|thumb|a [[nested|link]] caption]]here", "see here"),
        ("[[Image:Y.png|left]]word", "word"),
        ("[[a|b]] and [[c]] and [[dog]]s", "b and c and dogs"),
        ("[http://example.org label here] and [http://bare.org]", "label here and"),
        ("'''bold''' and ''italic'' and '''''both'''''", "bold and italic and both"),
        ("x&nbsp;y &amp; z &lt;b&gt;", "x y & z"),
        ("one<!-- hidden -->two", "onetwo"),
        ("f <math>x^2</math> g <gallery>A.jpg|c</gallery> h", "f g h"),
        ("[[Category:Foo]]text[[fr:Bonjour]][[:Category:Bar|visible]]", "textvisible"),
        ("a <span style=\"x\">b</span> <small>c</small>", "a b c"),
        ("{{convert|468|km2|sqmi}} wide, {{lang|fr|le mot}}", "468 km2 wide, le mot"),
        ("a {{nowrap|[[Unitary state|Unitary]] [[Parliamentary system|parliamentary]]}} diarchy",
         "a Unitary parliamentary diarchy"),
        ("unclosed {{template here", "unclosed template here"),
        ("text}} stray", "text stray"),
    ],
)
def test_inline_markup(wikitext, expected):
    sections = dump.parse_wikitext(wikitext)
    assert sections[0]["text"] == expected


def test_headings_levels_boilerplate_and_empty_sections():
    wikitext = (
        "Lead.\n==History==\nOld.\n===Early===\nEarlier.\n==Empty==\n{{main|X}}\n"
        "==See also==\n* [[Y]]\n===Sub of see also===\nText.\n==Notes and references==\n<references/>\n"
        "==Parent==\n===Child===\nChild text.\n==External links==\n* [http://x y]"
    )
    sections = dump.parse_wikitext(wikitext)
    assert [(s["heading"], s["level"]) for s in sections] == [
        ("", 1), ("History", 2), ("Early", 3), ("Parent", 2), ("Child", 3),
    ]
    assert sections[3]["text"] == ""  # kept: it is the parent of a kept subsection


def test_boilerplate_heading_detection_is_not_fooled_by_real_headings():
    for heading in ("References", "External links", "See also", "Further reading", "Notes", "Bibliography",
                    "Sources", "Citations", "Footnotes", "Notes and references", "References and notes"):
        assert dump.is_boilerplate_heading(heading), heading
    for heading in ("Works", "Selected works", "Literature", "Notes on pronunciation", "History"):
        assert not dump.is_boilerplate_heading(heading), heading


def test_tables_removed_by_default_and_kept_as_rows_on_request(table_dump):
    default = by_title(dump.iter_articles(table_dump))["Constructive vote of no confidence"]
    tables = by_title(dump.iter_articles(table_dump, keep_tables=True))["Constructive vote of no confidence"]
    row = "27 April 1972 | Rainer Barzel (CDU) | Willy Brandt (SPD) | 247 | 10 | 3 | 236 | no"
    assert row in section(tables, "History of use")["text"].split("\n")
    assert "Rainer Barzel (CDU) |" not in dump.article_text(default)
    for article in (default, tables):
        assert dump.markup_residue([dump.article_text(article)])["total"] == 0


def test_table_dump_without_siteinfo_gets_urls_from_its_language(table_dump):
    first = next(dump.iter_articles(table_dump))
    assert first["url"] == "https://en.wikipedia.org/wiki/Constructive_vote_of_no_confidence"


# --- quality on the whole tiny corpus (no WikiExtractor needed) --------------------------------


def test_markup_residue_is_below_threshold(tiny_articles, table_dump):
    texts = [dump.article_text(article) for article in tiny_articles]
    texts += [dump.article_text(article) for article in dump.iter_articles(table_dump, keep_tables=True)]
    residue = dump.markup_residue(texts)
    assert residue["characters"] > 500_000
    assert residue["total"] < 0.5, residue  # marks per 10,000 characters; WikiExtractor: see benchmarks/
    assert residue["{{"] == residue["[["] == residue["<ref"] == 0


def test_residue_counter_counts_real_markup(raw_pages):
    residue = dump.markup_residue([raw_wikitext(raw_pages, "Andorra")])
    assert residue["{{"] > 10 and residue["[["] > 10 and residue["heading =="] > 1


def test_heading_recall_on_real_pages(tiny_dump):
    recall = dump.heading_recall(tiny_dump)
    assert recall["expected"] > 400
    assert recall["recall"] >= 0.95, recall["missed"]
    # a heading over a table-only section is the kind that may go missing, never a prose one
    assert ("Andorra", "Statistics") in recall["missed"]


def test_wikitext_headings_reads_raw_headings(raw_pages):
    headings = dump.wikitext_headings(raw_wikitext(raw_pages, "Andorra"))
    assert headings[:3] == ["Etymology", "History", "17th to 19th centuries"]
    assert "Police Corps" in headings and "See also" not in headings


# --- formats: plain XML, multistream -----------------------------------------------------------


def test_plain_xml_parses_like_bz2(tmp_path, tiny_xml, tiny_articles):
    plain = tmp_path / "tiny.xml"
    plain.write_bytes(tiny_xml)
    assert list(dump.iter_articles(plain)) == tiny_articles


@pytest.fixture(scope="module")
def multistream(tmp_path_factory, tiny_dump):
    folder = tmp_path_factory.mktemp("multistream")
    dump_path = folder / "tiny-multistream.xml.bz2"
    index_path = folder / "tiny-multistream-index.txt.bz2"
    streams = dump.build_multistream(tiny_dump, dump_path, index_path, pages_per_stream=10)
    return dump_path, index_path, streams


def test_build_multistream_writes_concatenated_streams_and_index(multistream, tiny_articles):
    dump_path, index_path, streams = multistream
    assert streams == 1 + 12 + 1  # header, 118 pages by 10, footer
    assert dump_path.read_bytes().count(b"BZh9") >= streams
    index = dump.read_multistream_index(index_path)
    assert len(index) == 118
    assert index["Andorra"].page_id == 600
    first_line = bz2.decompress(index_path.read_bytes()).decode().splitlines()[0]
    assert first_line == f"{index['AccessibleComputing'].offset}:10:AccessibleComputing"
    # the whole multistream file streams like the original
    assert list(dump.iter_articles(dump_path)) == tiny_articles


class CountingFile(io.RawIOBase):
    """A binary file that counts the bytes read from it."""

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "rb")
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.handle.seek(offset, whence)

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.bytes_read += len(data)
        return data

    def close(self) -> None:
        self.handle.close()
        super().close()


def test_fetch_articles_reads_only_the_streams_it_needs(multistream, tiny_articles):
    dump_path, index_path, _ = multistream
    index = dump.read_multistream_index(index_path)
    titles = ["Andorra", "Albedo"]
    counting = CountingFile(dump_path)
    fetched = dump.fetch_articles(counting, index, titles)
    counting.close()

    expected = by_title(tiny_articles)
    assert fetched == [expected["Andorra"], expected["Albedo"]]
    header_stream = min(entry.offset for entry in index.values())
    needed = header_stream + sum({index[t].offset: index[t].length for t in titles}.values())
    assert counting.bytes_read == needed
    assert counting.bytes_read < dump_path.stat().st_size / 3


def test_fetch_articles_ignores_corrupt_other_streams(tmp_path, multistream, tiny_articles):
    dump_path, index_path, _ = multistream
    index = dump.read_multistream_index(index_path)
    wanted = index["Andorra"]
    data = bytearray(dump_path.read_bytes())
    first_page_stream = min(entry.offset for entry in index.values())
    for position in range(first_page_stream, len(data)):  # everything but the header and Andorra's stream
        if not wanted.offset <= position < wanted.offset + wanted.length:
            data[position] = 0
    corrupt = tmp_path / "corrupt.xml.bz2"
    corrupt.write_bytes(bytes(data))

    assert dump.fetch_articles(corrupt, index_path, ["Andorra"]) == [by_title(tiny_articles)["Andorra"]]
    with pytest.raises(dump.DumpError):
        list(dump.iter_pages(corrupt))


def test_fetch_articles_names_missing_titles(multistream):
    dump_path, index_path, _ = multistream
    with pytest.raises(KeyError, match="No Such Article"):
        dump.fetch_articles(dump_path, index_path, ["Andorra", "No Such Article"])


# --- output files ------------------------------------------------------------------------------


def test_dump_to_jsonl_roundtrip_and_dataset(tmp_path, tiny_dump, tiny_articles):
    out = tmp_path / "run" / "articles.jsonl"
    stats = dump.dump_to_jsonl(tiny_dump, out)
    assert stats.articles_kept == len(tiny_articles)
    assert dump.read_jsonl(out) == tiny_articles
    assert not list(out.parent.glob("*.partial"))
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert list(first) == ["id", "title", "url", "sections"]
    assert list(first["sections"][0]) == ["heading", "level", "text"]

    dataset = dump.load_articles_dataset(out)
    assert len(dataset) == len(tiny_articles)
    assert dataset[0]["title"] == tiny_articles[0]["title"]
    assert dataset[0]["sections"][0]["heading"] == ""


def test_cli_writes_jsonl_and_prints_stats(tmp_path, tiny_dump):
    out = tmp_path / "cli.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "helpers.dump", str(tiny_dump), "-o", str(out), "--no-progress"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"articles_kept\s+32", result.stdout)
    assert re.search(r"skipped_redirect\s+82", result.stdout)
    assert len(out.read_text(encoding="utf-8").splitlines()) == 32


def test_iter_pages_memory_stays_flat(tmp_path, tiny_xml):
    """Five times the pages must not need five times the memory: pages are cleared as they go."""
    head, _, rest = tiny_xml.partition(b"  <page>")
    pages, _, tail = (b"  <page>" + rest).rpartition(b"</mediawiki>")

    def peak_for(copies: int) -> int:
        path = tmp_path / f"x{copies}.xml"
        path.write_bytes(head + pages * copies + b"</mediawiki>" + tail)
        tracemalloc.start()
        count = sum(1 for _ in dump.iter_pages(path))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count == 118 * copies
        return peak

    one, five = peak_for(1), peak_for(5)
    assert five < one * 1.5, (one, five)


# --- bad input ---------------------------------------------------------------------------------


def assert_prefix_written(out: Path, tiny_articles: list[dict]) -> list[dict]:
    """The articles before a fault are in the salvage file; ``out`` itself was never written."""
    assert not out.exists()
    written = dump.read_jsonl(dump.salvage_path(out))
    assert written == tiny_articles[: len(written)]
    return written


def test_truncated_bz2_keeps_the_pages_before_the_fault(tmp_path, tiny_dump, tiny_articles):
    truncated = tmp_path / "truncated.xml.bz2"
    data = tiny_dump.read_bytes()
    # bz2 restores whole 900 kB blocks: 90% of the file holds the first block (106 pages) complete
    truncated.write_bytes(data[: len(data) * 9 // 10])
    out = tmp_path / "out.jsonl"
    with pytest.raises(dump.DumpError) as caught:
        dump.dump_to_jsonl(truncated, out)
    message = str(caught.value)
    assert "truncated.xml.bz2" in message and "byte" in message and "download" in message
    assert caught.value.pages_read > 0 and caught.value.last_title
    assert caught.value.pages_read == 106
    written = assert_prefix_written(out, tiny_articles)
    assert 5 < len(written) < len(tiny_articles)
    assert f"{len(written)} articles before the fault were written to {dump.salvage_path(out)}" in message


def test_truncated_multistream_loses_only_the_broken_stream(tmp_path, multistream, tiny_articles):
    dump_path, index_path, _ = multistream
    index = dump.read_multistream_index(index_path)
    cut_inside = index["Andorra"].offset + 100  # inside the stream that holds Andorra
    truncated = tmp_path / "cut-multistream.xml.bz2"
    truncated.write_bytes(dump_path.read_bytes()[:cut_inside])
    out = tmp_path / "out.jsonl"
    with pytest.raises(dump.DumpError, match="truncated") as caught:
        dump.dump_to_jsonl(truncated, out)
    pages_before = sum(entry.offset < index["Andorra"].offset for entry in index.values())
    assert caught.value.pages_read == pages_before
    assert caught.value.byte_offset == cut_inside
    written = assert_prefix_written(out, tiny_articles)
    assert written[-1]["title"] != "Andorra" and len(written) > 10


def test_malformed_xml_keeps_the_pages_before_the_fault(tmp_path, tiny_xml, raw_pages, tiny_articles):
    broken_page = raw_pages[60]
    title = re.search(rb"<title>(.*?)</title>", broken_page).group(1).decode()
    broken = tiny_xml.replace(broken_page, broken_page.replace(b"<revision>", b"<revision><<oops", 1))
    path = tmp_path / "malformed.xml"
    path.write_bytes(broken)
    out = tmp_path / "out.jsonl"
    with pytest.raises(dump.DumpError, match=r"malformed XML.*line \d+") as caught:
        dump.dump_to_jsonl(path, out)
    assert caught.value.pages_read == 60
    written = assert_prefix_written(out, tiny_articles)
    titles_before = [re.search(rb"<title>(.*?)</title>", p).group(1).decode() for p in raw_pages[:60]]
    assert [a["title"] for a in written] == [a["title"] for a in tiny_articles if a["title"] in titles_before]
    assert title not in {a["title"] for a in written}


def test_utf16_dump_is_refused_with_advice(tmp_path, tiny_xml):
    text = '<?xml version="1.0" encoding="UTF-16"?>\n' + tiny_xml.decode("utf-8")
    path = tmp_path / "utf16.xml"
    path.write_bytes(text.encode("utf-16"))
    out = tmp_path / "out.jsonl"
    with pytest.raises(dump.DumpError, match="UTF-16.*iconv") as caught:
        dump.dump_to_jsonl(path, out)
    assert "utf16.xml" in str(caught.value) and caught.value.byte_offset == 0
    assert not out.exists() and not dump.salvage_path(out).exists()


def test_empty_page_text_is_skipped_and_counted(tmp_path, tiny_xml):
    albedo_page = re.search(rb"<title>Albedo</title>.*?</page>", tiny_xml, re.S).group(0)
    emptied_page = re.sub(rb"<text[^>]*>.*?</text>", b'<text xml:space="preserve" />', albedo_page, flags=re.S)
    emptied = tiny_xml.replace(albedo_page, emptied_page)
    path = tmp_path / "empty.xml"
    path.write_bytes(emptied)
    stats = dump.DumpStats()
    titles = [a["title"] for a in dump.iter_articles(path, stats=stats)]
    assert "Albedo" not in titles and len(titles) == 31
    assert stats.skipped["empty"] == 1


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere.xml.bz2"
    out = tmp_path / "out.jsonl"
    with pytest.raises(FileNotFoundError, match="nowhere.xml.bz2"):
        dump.dump_to_jsonl(missing, out)
    with pytest.raises(dump.DumpError):
        list(dump.iter_pages(missing))
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cli_reports_the_fault_and_exits_nonzero(tmp_path, tiny_dump):
    truncated = tmp_path / "cut.xml.bz2"
    truncated.write_bytes(tiny_dump.read_bytes()[:100_000])
    out = tmp_path / "cut.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "helpers.dump", str(truncated), "-o", str(out), "--no-progress"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
    )
    assert result.returncode == 1
    assert "cut.xml.bz2" in result.stderr and "truncated" in result.stderr
    assert re.search(r"pages_read\s+\d+", result.stderr)
    # the first 900 kB bz2 block is cut: no article came out of it, and nothing is written
    assert "No article was read before the fault" in result.stderr and f"{out} was not touched" in result.stderr
    assert not out.exists() and not dump.salvage_path(out).exists()


# --- download ----------------------------------------------------------------------------------


def test_download_dead_host_names_url_and_mirror(tmp_path):
    url = "http://127.0.0.1:9/simplewiki-latest-pages-articles-multistream.xml.bz2"
    with pytest.raises(dump.DownloadError) as caught:
        dump.download(url, tmp_path / "dump.xml.bz2", progress=False, timeout=5)
    assert url in str(caught.value) and "mirror" in str(caught.value)
    assert isinstance(caught.value, ConnectionError)


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one dump file as dumps.wikimedia.org does: ``Range``, ``If-Range`` on its ETag, and the
    SHA-1 sums file beside it (named with the dump's date, as in ``latest/``)."""

    payload = b""
    etag = '"v1"'
    sums = ""  # the sha1sums.txt body; "" answers 404
    requests: list[dict] = []

    def do_GET(self) -> None:
        self.requests.append({"path": self.path, "range": self.headers.get("Range"), "if_range": self.headers.get("If-Range")})
        if self.path.endswith("-sha1sums.txt"):
            body = self.sums.encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        start = 0
        wanted = self.headers.get("Range")
        if wanted and self.headers.get("If-Range") in (None, self.etag):
            start = int(re.match(r"bytes=(\d+)-", wanted).group(1))
            self.send_response(206)
        else:  # no range, or the file changed since the client's partial began: the whole file
            self.send_response(200)
        body = self.payload[start:]
        self.send_header("ETag", self.etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def dump_server(tiny_dump):
    RangeHandler.payload = tiny_dump.read_bytes()
    RangeHandler.etag = '"v1"'
    RangeHandler.sums = f"{hashlib.sha1(RangeHandler.payload).hexdigest()}  simplewiki-20261101-pages-articles-multistream.xml.bz2\n"
    RangeHandler.requests = []
    server = http.server.HTTPServer(("127.0.0.1", 0), RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/simplewiki/latest/simplewiki-latest-pages-articles-multistream.xml.bz2"
    server.shutdown()
    server.server_close()


def _dump_requests():
    return [r for r in RangeHandler.requests if not r["path"].endswith("sha1sums.txt")]


def test_download_resumes_its_own_partial_file_and_verifies_the_whole(tmp_path, dump_server):
    dest = tmp_path / "simplewiki-latest-pages-articles-multistream.xml.bz2"
    half = len(RangeHandler.payload) // 2
    (tmp_path / f"{dest.name}.partial").write_bytes(RangeHandler.payload[:half])
    (tmp_path / f"{dest.name}.partial.json").write_text(json.dumps({"url": dump_server, "etag": '"v1"', "last_modified": None}))
    assert dump.local_source(dump_server, tmp_path) == dest
    assert dest.read_bytes() == RangeHandler.payload
    assert _dump_requests() == [{"path": urllib.parse.urlsplit(dump_server).path, "range": f"bytes={half}-", "if_range": '"v1"'}]
    assert sorted(p.name for p in tmp_path.iterdir()) == [dest.name, f"{dest.name}.sha1"]
    assert (tmp_path / f"{dest.name}.sha1").read_text().split()[0] == hashlib.sha1(RangeHandler.payload).hexdigest()
    RangeHandler.requests.clear()
    assert dump.download(dump_server, dest, progress=False) == dest and RangeHandler.requests == []  # verified: kept


def test_a_foreign_partial_is_not_trusted(tmp_path, dump_server, capsys):
    dest = tmp_path / "simplewiki-latest-pages-articles-multistream.xml.bz2"
    (tmp_path / f"{dest.name}.partial").write_bytes(b"\0" * 5000)  # another tool's, no record: proves nothing
    dump.download(dump_server, dest, progress=False)
    assert "not started by this download" in capsys.readouterr().out
    assert dest.read_bytes() == RangeHandler.payload and _dump_requests()[0]["range"] is None


def test_a_partial_of_a_file_since_replaced_is_downloaded_whole(tmp_path, dump_server):
    dest = tmp_path / "simplewiki-latest-pages-articles-multistream.xml.bz2"
    (tmp_path / f"{dest.name}.partial").write_bytes(b"old dump bytes")
    (tmp_path / f"{dest.name}.partial.json").write_text(json.dumps({"url": dump_server, "etag": '"v0"', "last_modified": None}))
    dump.download(dump_server, dest, progress=False)  # If-Range "v0" no longer matches: the server sends all of v1
    assert dest.read_bytes() == RangeHandler.payload and _dump_requests()[0]["if_range"] == '"v0"'


def test_a_corrupt_download_is_moved_aside_and_fetched_again(tmp_path, dump_server):
    dest = tmp_path / "simplewiki-latest-pages-articles-multistream.xml.bz2"
    good = RangeHandler.payload
    RangeHandler.payload = good[:-10] + b"x" * 10  # bytes damaged on the way
    with pytest.raises(dump.DownloadError, match="SHA-1 .* is not the .* Wikimedia publishes"):
        dump.download(dump_server, dest, progress=False)
    assert not dest.exists() and (tmp_path / f"{dest.name}.corrupt").exists()
    RangeHandler.payload = good
    assert dump.download(dump_server, dest, progress=False).read_bytes() == good


def test_a_file_found_in_place_is_checked_before_it_is_trusted(tmp_path, dump_server):
    dest = tmp_path / "simplewiki-latest-pages-articles-multistream.xml.bz2"
    dest.write_bytes(RangeHandler.payload[:1000])  # copied by hand, cut short: not the published file
    with pytest.raises(dump.DownloadError, match="corrupt"):
        dump.download(dump_server, dest, progress=False)
    assert dump.download(dump_server, dest, progress=False).read_bytes() == RangeHandler.payload


def test_without_published_sums_the_download_says_it_is_unverified(tmp_path, dump_server, capsys):
    RangeHandler.sums = ""
    dest = dump.download(dump_server, tmp_path / "simplewiki-latest-pages-articles-multistream.xml.bz2", progress=False)
    assert dest.read_bytes() == RangeHandler.payload and "unverified" in capsys.readouterr().out
    assert dump.checksums_url(dump_server).endswith("/simplewiki/latest/simplewiki-latest-sha1sums.txt")
    assert dump.checksums_url("https://example.org/files/corpus.xml.bz2") is None


def test_a_sample_downloads_only_the_first_streams_and_is_a_dump_of_its_own(tmp_path, dump_host, dump_host_requests, tiny_dump):
    from helpers.download import CLOSING_STREAM

    name = "simplewiki-latest-pages-articles-multistream"
    sample, index = dump.download_sample(f"{dump_host}{name}.xml.bz2", f"{dump_host}{name}-index.txt.bz2",
                                         tmp_path, 35, progress=False)
    assert sample.name == f"{name}.first-35-pages.xml.bz2" and index.name == f"{name}-index.first-35-pages.txt.bz2"
    entries = dump.read_multistream_index(index)
    assert len(entries) == 40  # 35 pages need the first 4 streams of 10
    ranges = [asked for path, asked in dump_host_requests if path.endswith(f"{name}.xml.bz2")]
    assert len(ranges) == 1 and ranges[0].startswith("bytes=0-")  # one request, for the first bytes only
    downloaded = int(ranges[0].split("-")[1]) + 1
    assert sample.stat().st_size == downloaded + len(CLOSING_STREAM)
    with urllib.request.urlopen(f"{dump_host}{name}.xml.bz2") as response:
        assert downloaded < len(response.read()) / 2  # 4 of 12 page streams (plus the header)
    pages = list(dump.iter_pages(sample))  # a whole dump of its own: the parser reads it to its closing tag
    assert [p.title for p in pages] == [p.title for p in dump.iter_pages(tiny_dump)][:40]
    last = max(entries.values(), key=lambda e: e.offset)
    assert dump.fetch_articles(sample, entries, [last.title])[0]["title"] == last.title
    dump_host_requests.clear()
    assert dump.download_sample(f"{dump_host}{name}.xml.bz2", f"{dump_host}{name}-index.txt.bz2", tmp_path, 35,
                                progress=False) == (sample, index)
    assert not [r for r in dump_host_requests if r[0].endswith(".xml.bz2")], "a finished sample is not fetched again"


def test_a_sample_whose_index_is_another_dumps_is_refused(tmp_path, tiny_dump, serve_folder):
    host = tmp_path / "host"
    dump.build_multistream(tiny_dump, host / "x-latest-a.xml.bz2", tmp_path / "index-10.txt.bz2", pages_per_stream=10)
    dump.build_multistream(tiny_dump, tmp_path / "other.xml.bz2", host / "x-latest-a-index.txt.bz2", pages_per_stream=7)
    base = serve_folder(host)
    with pytest.raises(dump.DownloadError, match="no bz2 stream starts at byte .* the index is not this dump's"):
        dump.download_sample(base + "x-latest-a.xml.bz2", base + "x-latest-a-index.txt.bz2", tmp_path / "dl", 30,
                             progress=False)
    assert not (tmp_path / "dl" / "x-latest-a.first-30-pages.xml.bz2").exists()  # nothing wrong left in place


# --- parsing on several processes: a multistream dump cut at its streams ----------------------------


def _stats_without_time(stats: dump.DumpStats) -> dict:
    return {key: value for key, value in stats.as_dict().items() if key not in ("seconds", "processes")}


def test_every_process_count_writes_the_same_bytes(tmp_path, multistream, tiny_dump):
    dump_path, index_path, _ = multistream
    one_stats = dump.dump_to_jsonl(tiny_dump, tmp_path / "one.jsonl")  # the plain dump, one process
    for processes in (2, 3, 13):  # 13: more processes than the 12 page streams
        stats = dump.dump_to_jsonl(dump_path, tmp_path / f"{processes}.jsonl", processes=processes)
        assert (tmp_path / f"{processes}.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
        assert _stats_without_time(stats) == _stats_without_time(one_stats)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["13.jsonl", "2.jsonl", "3.jsonl", "one.jsonl"]  # no shards left


@pytest.mark.parametrize("shards", [1, 2, 5, 12, 40])
def test_shards_hold_every_page_once_in_order(multistream, shards):
    dump_path, index_path, _ = multistream
    offsets = dump.read_stream_offsets(index_path)
    assert offsets == sorted({entry.offset for entry in dump.read_multistream_index(index_path).values()})
    cut = dump.shard_segments(dump_path, offsets, shards)
    assert 1 <= len(cut) <= min(shards, len(offsets)) and (shards == 1) == (len(cut) == 1)
    assert cut[0][0] == (0, offsets[0]) and cut[-1][1][1] is None  # the header first; the last runs to the end
    titles = [page.title for segments in cut for page in dump.iter_pages(dump_path, segments=segments)]
    assert titles == [page.title for page in dump.iter_pages(dump_path)]


@pytest.mark.parametrize("reader", [dump.read_multistream_index, dump.read_stream_offsets])
def test_both_index_readers_name_the_line_that_is_not_an_index_line(tmp_path, multistream, reader):
    _, index_path, _ = multistream
    lines = bz2.decompress(index_path.read_bytes()).splitlines(keepends=True)
    broken = tmp_path / "broken-multistream-index.txt.bz2"
    broken.write_bytes(bz2.compress(b"".join(lines[:3] + [b"<html>not an index</html>\n"] + lines[3:])))
    with pytest.raises(dump.DumpError, match=r"broken-multistream-index\.txt\.bz2, line 4: '<html>not an index"):
        reader(broken)


def test_a_corrupt_stream_keeps_what_one_process_keeps(tmp_path, multistream):
    dump_path, index_path, _ = multistream
    offsets = dump.read_stream_offsets(index_path)
    data = bytearray(dump_path.read_bytes())
    data[offsets[7] + 50:offsets[7] + 90] = bytes(40)  # inside the 8th page stream, of 12
    corrupt = tmp_path / "corrupt-multistream.xml.bz2"
    corrupt.write_bytes(bytes(data))
    (tmp_path / "corrupt-multistream-index.txt.bz2").write_bytes(index_path.read_bytes())
    faults = {}
    for processes in (1, 3):
        out = tmp_path / f"{processes}.jsonl"
        with pytest.raises(dump.DumpError, match="corrupt") as caught:
            dump.dump_to_jsonl(corrupt, out, processes=processes)
        faults[processes] = caught.value
        assert not out.exists()
        assert f"after page {caught.value.pages_read} ({caught.value.last_title!r})" in str(caught.value)
    assert faults[3].pages_read == faults[1].pages_read == 70 and faults[3].last_title == faults[1].last_title
    assert (tmp_path / "3.until-fault.jsonl").read_bytes() == (tmp_path / "1.until-fault.jsonl").read_bytes()
    assert len(dump.read_jsonl(tmp_path / "3.until-fault.jsonl")) > 0


def test_several_processes_need_the_index_and_none_means_as_many_as_can_be_used(tmp_path, tiny_dump, multistream):
    with pytest.raises(dump.DumpError, match="needs its multistream index"):
        dump.dump_to_jsonl(tiny_dump, tmp_path / "a.jsonl", processes=2)  # one bz2 stream: cannot be cut
    assert dump.parse_processes(tiny_dump, None) == (1, None)
    dump_path, index_path, _ = multistream
    assert dump.multistream_index_for(dump_path) == index_path
    assert dump.parse_processes(dump_path, None) == (os.cpu_count(), index_path)  # found beside the dump
    assert dump.parse_processes(dump_path, 3, index_path) == (3, index_path)
    with pytest.raises(ValueError, match="at least 1"):
        dump.parse_processes(dump_path, 0)


def test_the_cli_parses_on_several_processes(tmp_path, multistream, tiny_dump):
    dump_path, _, _ = multistream
    done = subprocess.run([sys.executable, "-m", "helpers.dump", str(dump_path), "-o", str(tmp_path / "a.jsonl"),
                           "--processes", "2", "--no-progress"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    dump.dump_to_jsonl(tiny_dump, tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_a_dead_host_during_a_sample_says_to_point_the_profile_at_a_mirror(tmp_path):
    """A sample is cut by the course from a URL: a file put in its place by hand would be discarded, so the
    error gives the overrides that take the same files from a mirror instead."""
    url = "http://127.0.0.1:9/simplewiki-latest-pages-articles-multistream.xml.bz2"
    with pytest.raises(dump.DownloadError) as caught:
        dump.download(url, tmp_path / "sample.xml.bz2", progress=False, timeout=5, length=1000)
    message = str(caught.value)
    assert '"dump_source"' in message and '"dump_index_source"' in message and "mirror" in message
    assert f"put it at {tmp_path}" not in message
    with pytest.raises(dump.DownloadError, match=f"put it at {tmp_path / 'whole.xml.bz2'}"):
        dump.download(url, tmp_path / "whole.xml.bz2", progress=False, timeout=5)
