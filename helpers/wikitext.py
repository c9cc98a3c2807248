"""Wikitext to plain text, split into sections: the markup stripper of chapter 01.

``parse_wikitext`` is the entry point: ``clean_inline`` removes comments, references, tags, templates
and tables (``strip_braces``), links (``strip_links``), quotes and entities, in that order; then the
text is cut at its headings, boilerplate sections are dropped and lines become paragraphs.
Pure functions on strings: no files, no XML. ``helpers.pages`` applies them to a dump's pages, and
every name here is importable from ``helpers.dump`` too.
"""
from __future__ import annotations

import bisect
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
# The opening and closing tags of those elements; ``drop_elements`` pairs them in one scan.
DROPPED_TAG_RE = re.compile(rf"<(/?)({_DROPPED_TAG_NAMES})\b([^>]*)>", re.I)
# As in MediaWiki's preprocessor, these run to the end of the page when never closed; any other
# unclosed tag is literal text, and parsing goes on after it.
RUN_TO_END_TAGS = frozenset({"includeonly", "noinclude", "onlyinclude"})
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
    # (templates nested in the arguments were replaced before this one: strip_braces works inside out)
    if name in KEEP_FIRST_ARGUMENT_TEMPLATES and arguments:
        return arguments[0]
    if name == "lang" and len(arguments) >= 2:
        return arguments[1]
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


class _Span:
    """An open template, table or link while scanning: its kind, where its body starts, and the body so
    far with the spans nested in it already replaced. ``pieces`` holds strings, and lists for the
    bodies of unclosed spans folded into it (joined once, at the end: no text is copied twice)."""

    __slots__ = ("kind", "start", "copied", "pieces")

    def __init__(self, kind: str, start: int, copied: int) -> None:
        self.kind, self.start, self.copied, self.pieces = kind, start, copied, []

    def take(self, text: str, up_to: int) -> None:
        self.pieces.append(text[self.copied:up_to])
        self.copied = up_to

    def body(self, text: str, up_to: int) -> str:
        return _flatten(self.pieces) + text[self.copied:up_to]


def _flatten(pieces: list) -> str:
    """The text of nested piece lists, joined without recursion."""
    out: list[str] = []
    pending = [iter(pieces)]
    while pending:
        for piece in pending[-1]:
            if isinstance(piece, list):
                pending.append(iter(piece))
                break
            out.append(piece)
        else:
            pending.pop()
    return "".join(out)


# An unclosed infobox or table: its name line, then lines of parameters or rows ("| name = X", "|-", "! a").
UNCLOSED_BLOCK_RE = re.compile(r"[^\n]*(?:\n[ \t]*[|!][^\n]*)+")


def _fold_unclosed(text: str, stack: list[_Span], up_to: int) -> None:
    """An opener never closed is literal text, as in MediaWiki: its mark is dropped and its body so far
    joins its parent. One exception keeps prose clean: when the opener starts a block (a template's
    name line followed by ``| parameter`` lines, or a table's rows), that block goes too."""
    span = stack.pop()
    span.take(text, up_to)
    pieces = span.pieces
    if span.kind in ("{{", "{|"):
        lead = 0  # the span's own text before anything folded into it
        while lead < len(pieces) and isinstance(pieces[lead], str):
            lead += 1
        head = "".join(pieces[:lead])
        block = UNCLOSED_BLOCK_RE.match(head)
        if block and "\n" in block.group():
            pieces = [head[block.end():], *pieces[lead:]]
    parent = stack[-1]
    parent.pieces.append(pieces)
    parent.copied = up_to


def strip_braces(text: str, keep_tables: bool = False) -> str:
    """Remove templates ``{{...}}`` and tables ``{|...|}``, nested to any depth, in one linear scan.

    A stack of open spans pairs each closing token with its opener, and each span's body is built with
    the spans inside it already replaced, so nothing is scanned twice and nothing recurses, however deep
    the nesting. As in MediaWiki, an opener that never closes is literal text: its mark is dropped and
    what follows it is read as usual. With ``keep_tables`` a table becomes one line per row, cells
    separated by `` | ``.
    """
    if "{" not in text and "}" not in text:
        return text
    stack = [_Span("", 0, 0)]  # the page itself at the bottom
    open_count = {"{{": 0, "{|": 0}  # spans of each kind on the stack (a scan of the stack would be quadratic)
    for token in BRACE_TOKEN_RE.finditer(text):
        mark = token.group().strip()
        if mark in ("{{", "{|"):
            stack[-1].take(text, token.start())
            stack.append(_Span(mark, token.start(), token.end()))
            open_count[mark] += 1
            continue
        wanted = "{{" if mark == "}}" else "{|"
        if not open_count[wanted]:
            if len(stack) == 1:  # a stray closer outside any span: drop it, keep the text before
                stack[0].take(text, token.start())
                stack[0].copied = token.end()
            continue
        while stack[-1].kind != wanted:  # an unclosed inner span ends with its parent
            open_count[stack[-1].kind] -= 1
            _fold_unclosed(text, stack, token.start())
        span = stack.pop()
        open_count[wanted] -= 1
        body = span.body(text, token.start())
        if span.kind == "{{":
            replacement = _template_replacement(body, keep_tables)
        else:
            replacement = "\n" + table_to_text(body) + "\n" if keep_tables else ""
        stack[-1].pieces.append(replacement)
        stack[-1].copied = token.end()
    while len(stack) > 1:
        _fold_unclosed(text, stack, len(text))
    return stack[0].body(text, len(text))


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

    File captions may hold links of their own: as in ``strip_braces``, a stack pairs the brackets in
    one scan and each link's text is built with the links inside it already replaced. An unclosed
    ``[[`` is literal text (its mark dropped), and a stray ``]]`` is dropped.
    """
    if "[[" not in text:
        return text
    stack = [_Span("", 0, 0)]
    for token in LINK_TOKEN_RE.finditer(text):
        if token.group() == "[[":
            stack[-1].take(text, token.start())
            stack.append(_Span("[[", token.start(), token.end()))
        elif len(stack) > 1:
            span = stack.pop()
            stack[-1].pieces.append(_link_label(span.body(text, token.start())))
            stack[-1].copied = token.end()
    while len(stack) > 1:
        _fold_unclosed(text, stack, len(text))
    return stack[0].body(text, len(text)).replace("]]", "")


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
        return label  # links inside it were replaced before this one (strip_links works inside out)
    return target


def drop_elements(text: str) -> str:
    """Remove ``<ref>...</ref>``, ``<math>...</math>`` and the other ``DROPPED_TAGS`` with their content.

    Each opening tag is paired with the first closing tag of its name after it, as MediaWiki's
    preprocessor pairs them; a self-closing one (``<ref name="a"/>``) goes alone. An opening tag with no
    closing tag after it is literal text: only the tag goes, and the rest of the page is read on
    (except ``includeonly``, ``noinclude`` and ``onlyinclude``, which run to the end). One scan, with
    the closing positions looked up by bisection.
    """
    tokens = list(DROPPED_TAG_RE.finditer(text))
    if not tokens:
        return text
    closers: dict[str, list[int]] = {}
    for token in tokens:
        if token.group(1):
            closers.setdefault(token.group(2).lower(), []).append(token.start())
    pieces, copied, resume_at = [], 0, 0
    for token in tokens:
        if token.start() < resume_at or token.group(1):
            continue  # inside a dropped element, or a stray closing tag (ANY_TAG_RE removes it later)
        name = token.group(2).lower()
        pieces.append(text[copied:token.start()])
        if token.group(3).rstrip().endswith("/"):  # self-closing
            copied = resume_at = token.end()
            continue
        after = closers.get(name, [])
        index = bisect.bisect_left(after, token.end())
        if index < len(after):
            close = DROPPED_TAG_RE.match(text, after[index])
            copied = resume_at = close.end()
        elif name in RUN_TO_END_TAGS:
            copied = resume_at = len(text)
        else:  # unclosed: the tag is literal text, parsing goes on after it
            copied = resume_at = token.end()
    pieces.append(text[copied:])
    return "".join(pieces)


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
        text = drop_elements(text)
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
