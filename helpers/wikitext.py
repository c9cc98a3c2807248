"""Wikitext to plain text, split into sections: the markup stripper of chapter 01.

``parse_wikitext`` is the entry point: ``clean_inline`` removes comments, references, tags, templates
and tables (``strip_braces``), links (``strip_links``), quotes and entities, in that order; then the
text is cut at its headings, boilerplate sections are dropped and lines become paragraphs.
Pure functions on strings: no files, no XML. ``helpers.pages`` applies them to a dump's pages, and
every name here is importable from ``helpers.dump`` too.
"""
from __future__ import annotations

import html
import re
from typing import Any

# Tags whose content is not article prose: references, formulas, galleries, scores...
DROPPED_TAGS = (
    "ref", "references", "math", "chem", "ce", "gallery", "timeline", "imagemap", "score", "graph",
    "mapframe", "maplink", "templatedata", "syntaxhighlight", "source", "hiero", "inputbox",
    "categorytree", "includeonly", "noinclude",
)
_DROPPED_TAG_NAMES = "|".join(DROPPED_TAGS)
COMMENT_RE = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
SELF_CLOSING_DROPPED_RE = re.compile(rf"<(?:{_DROPPED_TAG_NAMES})\b[^>]*/>", re.I)
DROPPED_ELEMENT_RE = re.compile(rf"<({_DROPPED_TAG_NAMES})\b[^>]*>.*?(?:</\1\s*>|\Z)", re.I | re.S)
LINE_BREAK_TAG_RE = re.compile(r"<br\s*/?>|<br\s[^>]*>", re.I)
ANY_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")

# One scan finds template braces and table delimiters (a table opens and closes at a line start).
BRACE_TOKEN_RE = re.compile(r"\{\{|\}\}|^[ \t]*\{\||^[ \t]*\|\}", re.M)
CELL_ATTRIBUTES_RE = re.compile(r"""^(?:\s*[\w-]+\s*=\s*(?:"[^"]*"|'[^']*'|[^\s|"']+))+\s*$""")
TABLE_ROW_MARK = "\x01"  # tells the paragraph builder that a line is a table row, kept as its own line
LINK_TOKEN_RE = re.compile(r"\[\[|\]\]")
EXTERNAL_LINK_RE = re.compile(r"\[(?:https?:|ftp:|mailto:|//)[^\s\]]*(?:[ \t]+([^\]\n]*))?\]", re.I)
BOLD_ITALIC_RE = re.compile(r"'{2,5}")
MAGIC_WORD_RE = re.compile(r"__[A-Z]+__")
HEADING_RE = re.compile(r"^(={1,6})(.+?)(={1,6})[ \t]*$", re.M)
# Runs of spaces and odd spaces only: matching every single space would cost a call per word.
SPACES_RE = re.compile(r" [ \t\u00a0\u2009\u202f]+|[\t\u00a0\u2009\u202f][ \t\u00a0\u2009\u202f]*")
LIST_MARKER_RE = re.compile(r"^[*#:;]+\s*")
# What removed templates leave behind: "Andorra (; , )" and "Award of Merit ."
EMPTY_PARENTHESES_RE = re.compile(r"\([ \t,;:.–-]*\)")
SPACE_BEFORE_PUNCTUATION_RE = re.compile(r" ([.,;:!?])(?=\s|$)", re.M)
ENTITY_RE = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")

# Links into these namespaces are not prose: media, categories. (Lower case, no colon.)
NON_TEXT_LINK_PREFIXES = {"file", "image", "category", "media"}
# An interlanguage link's prefix is a language code: "fr", "zh-min-nan", "simple".
LANGUAGE_PREFIX_RE = re.compile(r"^(?:[a-z]{2,3}(?:-[a-z]{2,8}){0,3}|simple)$")

BOILERPLATE_HEADINGS = {
    "references", "reference", "external links", "external link", "see also", "further reading",
    "notes", "note", "bibliography", "sources", "citations", "footnotes", "works cited",
    "general references", "specific references", "other references", "cited sources", "reference notes",
    "explanatory notes", "citation notes", "endnotes", "additional reading", "related articles",
    "references cited", "web links",
}
# A few inline templates carry words of the sentence around them; their content is kept.
KEEP_FIRST_ARGUMENT_TEMPLATES = {"nowrap", "nobr", "small", "big", "smallcaps", "sc", "nowiki", "lang-en"}
KEPT_TEMPLATES = KEEP_FIRST_ARGUMENT_TEMPLATES | {"lang", "convert", "cvt"}


def _template_replacement(body: str, keep_tables: bool) -> str:
    """The text a template leaves in the sentence: nothing, except for a few inline ones."""
    name, _, rest = body.partition("|")
    name = name.strip().lower().replace("_", " ")
    if not rest or name not in KEPT_TEMPLATES:
        return ""
    arguments = [argument for argument in _split_arguments(rest) if "=" not in argument]
    if name in KEEP_FIRST_ARGUMENT_TEMPLATES and arguments:
        return strip_braces(arguments[0], keep_tables)
    if name == "lang" and len(arguments) >= 2:
        return strip_braces(arguments[1], keep_tables)
    if name in ("convert", "cvt") and len(arguments) >= 2:
        # "{{convert|468|km2|sqmi}}" reads "468 km2"; a range "{{convert|1|to|2|m}}" reads "1 to 2 m"
        if len(arguments) >= 4 and arguments[1] in ("to", "-", "and", "or", "by", "x", "×"):
            return " ".join(argument.strip() for argument in arguments[:4])
        return f"{arguments[0].strip()} {arguments[1].strip()}"
    return ""


def _split_arguments(text: str) -> list[str]:
    """Split template arguments at the pipes that are not inside a nested link or template."""
    arguments, depth, start = [], 0, 0
    for position, character in enumerate(text):
        if character in "[{":
            depth += 1
        elif character in "]}":
            depth -= 1
        elif character == "|" and depth <= 0:
            arguments.append(text[start:position])
            start = position + 1
    arguments.append(text[start:])
    return arguments


def strip_braces(text: str, keep_tables: bool = False) -> str:
    """Remove templates ``{{...}}`` and tables ``{|...|}``, nested to any depth, in one linear scan.

    A stack of open positions pairs each closing token with its opener; only the outermost spans are
    cut, so the cost is linear in the text length. With ``keep_tables`` a table becomes one line per
    row, cells separated by `` | ``.
    """
    if "{" not in text and "}" not in text:
        return text
    pieces: list[str] = []
    stack: list[tuple[str, int]] = []  # (kind, start) of open templates ("{{") and tables ("{|")
    copied_up_to = 0
    for token in BRACE_TOKEN_RE.finditer(text):
        mark = token.group().strip()
        if mark in ("{{", "{|"):
            if not stack:
                pieces.append(text[copied_up_to:token.start()])
            stack.append((mark, token.end()))
            continue
        wanted = "{{" if mark == "}}" else "{|"
        if not stack or not any(kind == wanted for kind, _ in stack):
            if not stack:  # a stray closer outside any span: drop it, keep the text before
                pieces.append(text[copied_up_to:token.start()])
                copied_up_to = token.end()
            continue
        while stack[-1][0] != wanted:  # an unclosed inner span ends with its parent
            stack.pop()
        kind, body_start = stack.pop()
        if not stack:
            body = text[body_start:token.start()]
            if kind == "{{":
                pieces.append(_template_replacement(body, keep_tables))
            elif keep_tables:
                pieces.append("\n" + table_to_text(strip_braces(body, keep_tables)) + "\n")
            copied_up_to = token.end()
    if stack:  # the outermost opener never closes: drop just its mark and read on after it
        pieces.append(strip_braces(text[stack[0][1]:], keep_tables))
    else:
        pieces.append(text[copied_up_to:])
    return "".join(pieces)


def table_to_text(table_body: str) -> str:
    """Rows of a wikitable (the part between ``{|`` and ``|}``) as lines of `` | ``-separated cells."""
    rows: list[list[str]] = []
    current: list[str] = []
    caption = ""
    for line in table_body.split("\n")[1:]:  # the first line holds the table's attributes
        line = line.strip()
        if not line:
            continue
        if line.startswith("|-"):
            if current:
                rows.append(current)
            current = []
        elif line.startswith("|+"):
            caption = _cell_content(line[2:])
        elif line[0] in "|!":
            separator = "||" if line[0] == "|" else "!!"
            cells = line[1:].split(separator) if separator == "||" else re.split(r"!!|\|\|", line[1:])
            current.extend(_cell_content(cell) for cell in cells)
        elif current:  # a cell's content continues on the next line
            current[-1] = (current[-1] + " " + line).strip()
    if current:
        rows.append(current)
    lines = [caption] if caption else []
    lines += [" | ".join(cell for cell in row if cell) for row in rows]
    return "\n".join(TABLE_ROW_MARK + line for line in lines if line.strip())


def _cell_content(cell: str) -> str:
    """A cell's text without its attributes (``style="..." | text``); links are still whole here."""
    depth, cut = 0, -1
    for position, character in enumerate(cell):
        if character == "[":
            depth += 1
        elif character == "]":
            depth -= 1
        elif character == "|" and depth == 0:
            cut = position
            break
    if cut >= 0 and "=" in cell[:cut] or cut >= 0 and not cell[:cut].strip():
        cell = cell[cut + 1:]
    if CELL_ATTRIBUTES_RE.match(cell):  # only attributes left: the cell held a template
        return ""
    return cell.strip()


def strip_links(text: str) -> str:
    """Replace ``[[target|label]]`` by its label and drop file, image, category and language links.

    File captions may hold links of their own, so outermost links are found with a stack.
    """
    if "[[" not in text:
        return text
    pieces: list[str] = []
    depth = 0
    start = 0
    copied_up_to = 0
    for token in LINK_TOKEN_RE.finditer(text):
        if token.group() == "[[":
            if depth == 0:
                pieces.append(text[copied_up_to:token.start()])
                start = token.end()
            depth += 1
        elif depth > 0:
            depth -= 1
            if depth == 0:
                pieces.append(_link_label(text[start:token.start()]))
                copied_up_to = token.end()
    if depth > 0:  # an unclosed "[[": drop just that mark and read on from there
        pieces.append(strip_links(text[start:]))
    else:
        pieces.append(text[copied_up_to:])
    return "".join(pieces).replace("]]", "")


def _link_label(inner: str) -> str:
    target, pipe, label = inner.partition("|")
    visible_colon = target.startswith(":")  # [[:Category:X]] is an ordinary, visible link
    target = target.lstrip(":").strip()
    prefix, colon, _ = target.partition(":")
    prefix = prefix.strip().lower()
    if colon and not visible_colon and (prefix in NON_TEXT_LINK_PREFIXES or LANGUAGE_PREFIX_RE.match(prefix)):
        return ""
    if pipe:
        label = label.strip()
        if not label:  # the "pipe trick": [[Paris, Texas|]] reads "Paris"
            return re.sub(r"\s*\(.*?\)\s*$", "", target.split(",")[0]).strip()
        return strip_links(label) if "[[" in label else label
    return target


def _unescape(text: str) -> str:
    # The XML parser undid one level of escaping; "&amp;nbsp;" in the dump leaves "&nbsp;" here,
    # and a second level occasionally survives in the wikitext itself.
    for _ in range(2):
        if "&" not in text or not ENTITY_RE.search(text):
            break
        text = html.unescape(text)
    return text


def clean_inline(text: str, keep_tables: bool = False) -> str:
    """Wikitext to plain text, lines kept: comments, refs, tags, templates, tables, links, quotes out."""
    text = COMMENT_RE.sub("", text)
    if "<" in text:
        text = SELF_CLOSING_DROPPED_RE.sub("", text)
        text = DROPPED_ELEMENT_RE.sub("", text)
        text = LINE_BREAK_TAG_RE.sub("\n", text)
    text = strip_braces(text, keep_tables)
    text = strip_links(text)
    if "[" in text:
        text = EXTERNAL_LINK_RE.sub(lambda match: match.group(1) or "", text)
    if "''" in text:
        text = BOLD_ITALIC_RE.sub("", text)
    text = MAGIC_WORD_RE.sub("", text)
    if "<" in text:
        text = ANY_TAG_RE.sub("", text)
    text = _unescape(text)
    if "<" in text:  # tags written as entities ("&lt;br/&gt;") only become tags once unescaped
        text = LINE_BREAK_TAG_RE.sub("\n", text)
        text = ANY_TAG_RE.sub("", text)
    return text


def _paragraphs(text: str) -> str:
    """A section's lines to paragraphs: prose lines joined, list items and table rows one per line."""
    if "(" in text:
        text = EMPTY_PARENTHESES_RE.sub("", text)
    text = SPACES_RE.sub(" ", text)
    text = SPACE_BEFORE_PUNCTUATION_RE.sub(r"\1", text)
    paragraphs: list[str] = []
    block: list[str] = []
    prose: list[str] = []

    def end_prose() -> None:
        if prose:
            block.append(" ".join(prose))
            prose.clear()

    def end_block() -> None:
        end_prose()
        if block:
            paragraphs.append("\n".join(block))
            block.clear()

    for line in text.split("\n"):
        line = line.strip()
        if not line or line.startswith("----"):
            end_block()
        elif line[0] in "*#:;" + TABLE_ROW_MARK:
            end_prose()
            item = LIST_MARKER_RE.sub("", line.lstrip(TABLE_ROW_MARK))
            if item:
                block.append(item)
        else:
            if block and not prose:  # prose after a list starts a new paragraph
                end_block()
            prose.append(line)
    end_block()
    return "\n\n".join(paragraphs)


def is_boilerplate_heading(heading: str) -> bool:
    """True for References, External links, See also, "Notes and references" and the like."""
    normalized = re.sub(r"[^\w\s&,]", "", heading.lower())
    parts = [part.strip() for part in re.split(r",|&|\band\b", normalized)]
    parts = [part for part in parts if part]
    return bool(parts) and all(part in BOILERPLATE_HEADINGS for part in parts)


def parse_wikitext(text: str, keep_tables: bool = False) -> list[dict[str, Any]]:
    """Split wikitext into ``[{"heading", "level", "text"}]`` sections of plain text.

    The lead section comes first with heading ``""`` and level 1; ``==`` headings are level 2,
    ``===`` level 3 and so on. Boilerplate sections (References, See also...) are dropped with their
    subsections, and so are sections left with neither text nor subsections.
    """
    text = clean_inline(text, keep_tables)
    sections: list[dict[str, Any]] = []
    heading, level, start = "", 1, 0
    for match in HEADING_RE.finditer(text):
        sections.append({"heading": heading, "level": level, "text": text[start:match.start()]})
        opening, closing = match.group(1), match.group(3)
        level = min(len(opening), len(closing))
        # unequal marks ("== A ===") leave the extra signs in the heading, as MediaWiki does
        heading = (opening[level:] + match.group(2) + closing[level:]).strip()
        heading = SPACES_RE.sub(" ", heading).strip(" =")
        start = match.end()
    sections.append({"heading": heading, "level": level, "text": text[start:]})

    kept: list[dict[str, Any]] = []
    dropping_below: int | None = None  # inside a boilerplate section: its level
    for section in sections:
        if dropping_below is not None and section["level"] > dropping_below:
            continue
        dropping_below = None
        if section["heading"] and is_boilerplate_heading(section["heading"]):
            dropping_below = section["level"]
            continue
        section["text"] = _paragraphs(section["text"])
        kept.append(section)
    return _drop_empty_sections(kept)


def _drop_empty_sections(sections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Walk backwards so a heading whose subsections all vanished is seen as empty too.
    kept: list[dict[str, Any]] = []
    for section in reversed(sections):
        has_children = bool(kept) and kept[-1]["level"] > section["level"]
        if section["text"] or (has_children and section["heading"]):
            kept.append(section)
    return kept[::-1]
