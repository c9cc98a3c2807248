"""NLTK without ``nltk.download``: WordNet from Debian's files, Punkt trained on our own corpus.

NLTK keeps its data (WordNet, the Punkt sentence model, the stopword lists) outside the package and
fetches it with ``nltk.download``. CI and the offline ``tiny`` profile cannot reach NLTK's data
server, so this module finds each resource another way:

- **WordNet**: if NLTK can already load it, that is used. Otherwise, when Debian's ``wordnet-base``
  and ``wordnet-sense-index`` packages are installed (``/usr/share/wordnet``), their files are copied
  into ``nltk_data/corpora/wordnet/`` together with the ``lexnames`` file NLTK also reads, which
  Debian ships only as the table of the ``lexnames(5WN)`` man page. Failing both, online,
  ``nltk.download("wordnet")``; failing that, an error naming what to install.
- **Punkt** (sentence splitting): NLTK's pretrained ``punkt_tab`` cannot be downloaded here, and
  Punkt is unsupervised anyway, so :func:`train_punkt` trains it on the corpus text itself and caches
  the learned parameters in ``nltk_data/punkt_course/`` keyed by a hash of that text.
- **Stopwords**: NLTK's list if its ``stopwords`` corpus is installed, else the course's own list
  (:data:`COURSE_STOPWORDS`); :func:`english_stopwords` says which one you got.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import nltk
from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer, PunktTrainer

from helpers.course import atomic_output
from helpers.profiles import REPO_ROOT

DEFAULT_DATA_DIR = REPO_ROOT / "nltk_data"
DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
LEXNAMES_MAN_PAGE = Path("/usr/share/man/man5/lexnames.5WN.gz")
DEBIAN_WORDNET_COPYRIGHT = Path("/usr/share/doc/wordnet-base/copyright")

#: The Debian packages that provide WordNet 3.0 offline (index.sense is in the second one).
APT_PACKAGES = ("wordnet-base", "wordnet-sense-index")

#: The files NLTK's ``WordNetCorpusReader`` opens (its ``_FILES``), minus ``lexnames``, which we write.
WORDNET_FILES = (
    "cntlist.rev",
    "index.sense",
    "index.adj",
    "index.adv",
    "index.noun",
    "index.verb",
    "data.adj",
    "data.adv",
    "data.noun",
    "data.verb",
    "adj.exc",
    "adv.exc",
    "noun.exc",
    "verb.exc",
)

#: WordNet 3.0's lexicographer files: (number, name, syntactic category 1 noun, 2 verb, 3 adj, 4 adv).
#: Source: the table in the ``lexnames(5WN)`` man page of WordNet 3.0 (Debian: wordnet-base,
#: /usr/share/man/man5/lexnames.5WN.gz). Kept as data because Debian images often drop man pages;
#: ``tests/test_nltk_offline.py`` checks it against the man page where that is installed.
LEXNAMES: tuple[tuple[int, str, int], ...] = (
    (0, "adj.all", 3), (1, "adj.pert", 3), (2, "adv.all", 4), (3, "noun.Tops", 1),
    (4, "noun.act", 1), (5, "noun.animal", 1), (6, "noun.artifact", 1), (7, "noun.attribute", 1),
    (8, "noun.body", 1), (9, "noun.cognition", 1), (10, "noun.communication", 1),
    (11, "noun.event", 1), (12, "noun.feeling", 1), (13, "noun.food", 1), (14, "noun.group", 1),
    (15, "noun.location", 1), (16, "noun.motive", 1), (17, "noun.object", 1),
    (18, "noun.person", 1), (19, "noun.phenomenon", 1), (20, "noun.plant", 1),
    (21, "noun.possession", 1), (22, "noun.process", 1), (23, "noun.quantity", 1),
    (24, "noun.relation", 1), (25, "noun.shape", 1), (26, "noun.state", 1),
    (27, "noun.substance", 1), (28, "noun.time", 1), (29, "verb.body", 2), (30, "verb.change", 2),
    (31, "verb.cognition", 2), (32, "verb.communication", 2), (33, "verb.competition", 2),
    (34, "verb.consumption", 2), (35, "verb.contact", 2), (36, "verb.creation", 2),
    (37, "verb.emotion", 2), (38, "verb.motion", 2), (39, "verb.perception", 2),
    (40, "verb.possession", 2), (41, "verb.social", 2), (42, "verb.stative", 2),
    (43, "verb.weather", 2), (44, "adj.ppl", 3),
)  # fmt: skip

#: The course's own English stopword list: function words (articles, pronouns, auxiliaries,
#: prepositions, conjunctions, determiners and a few frequent adverbs), written for this book. It
#: covers the same ground as NLTK's list without being a copy of it, so counts differ slightly
#: between the two. The training-text cleaning always uses this list, so its results do not depend
#: on what a machine happens to have installed.
COURSE_STOPWORDS: frozenset[str] = frozenset(
    """
    a an the
    i me my mine myself we us our ours ourselves you your yours yourself yourselves
    he him his himself she her hers herself it its itself they them their theirs themselves
    one ones oneself
    this that these those who whom whose which what whatever whoever where when why how
    am is are was were be been being have has had having do does did doing done
    will would shall should can could may might must ought
    isn't aren't wasn't weren't hasn't haven't hadn't doesn't don't didn't won't wouldn't
    shan't shouldn't can't cannot couldn't mustn't mightn't needn't
    it's that's there's here's what's let's i'm you're we're they're he's she's
    i've you've we've they've i'd you'd he'd she'd we'd they'd i'll you'll he'll she'll we'll they'll
    and or but nor so yet if then else than because as until while although though unless whether
    of at by for with without about against between into through during before after above below
    to from up down in out on off over under again further once onto upon within along across
    among around behind beside besides beyond toward towards via per since till
    here there all any both each either neither few more most other others some such no not only
    own same too very just also even ever still already quite rather much many several
    s t d ll m re ve
    """.split()
)


#: Where each resource came from in this process, in words (filled in as they are set up).
SOURCES: dict[str, str] = {}


class NltkDataError(RuntimeError):
    """NLTK data the course needs is neither installed, nor on Debian's disk, nor downloadable."""


# --------------------------------------------------------------------------------------------
# WordNet
# --------------------------------------------------------------------------------------------


def ensure_nltk_data(data_dir: Path | None = None) -> Path:
    """Make WordNet loadable by NLTK without a download where possible; return the data folder.

    ``data_dir`` (default ``<repo>/nltk_data``, git-ignored) is put first on ``nltk.data.path``.
    WordNet comes from, in order: an existing NLTK install; Debian's files (copied, with a
    generated ``lexnames``); ``nltk.download`` when online. If none works, :class:`NltkDataError`
    says what to install. Punkt needs the corpus, so it is trained separately: :func:`train_punkt`.
    """
    data_dir = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    data_dir.mkdir(parents=True, exist_ok=True)
    if str(data_dir) not in nltk.data.path:
        nltk.data.path.insert(0, str(data_dir))
    SOURCES["wordnet"] = ensure_wordnet(data_dir)
    return data_dir


def ensure_wordnet(data_dir: Path, source_dir: Path | None = None) -> str:
    """Make ``corpora/wordnet`` findable on ``nltk.data.path``; return where it came from, in words.

    ``source_dir`` is where Debian's files are looked for (default :data:`DEBIAN_WORDNET_DIR`).
    """
    source_dir = Path(source_dir) if source_dir is not None else DEBIAN_WORDNET_DIR
    found = _find_nltk_resource("corpora/wordnet")
    if found is not None:
        return f"already installed for NLTK ({found})"
    if has_debian_wordnet(source_dir):
        target = install_wordnet_from_debian(data_dir, source_dir)
        return f"Debian packages {' + '.join(APT_PACKAGES)} ({source_dir}), copied to {target}"
    try:
        # nltk.download reports most failures by returning False rather than raising.
        ok = nltk.download("wordnet", download_dir=str(data_dir), quiet=True, raise_on_error=True)
    except Exception as error:  # no network, proxy, server error: all end in the same advice
        ok, reason = False, f"{type(error).__name__}: {error}"
    else:
        reason = "nltk.download returned False"
    if ok and _find_nltk_resource("corpora/wordnet") is not None:
        return f"downloaded with nltk.download into {data_dir}"
    raise NltkDataError(
        f"WordNet is not available to NLTK and could not be downloaded ({reason}). Either install "
        f"Debian's WordNet files (`sudo apt-get install -y {' '.join(APT_PACKAGES)}`, which put them "
        f"in {source_dir}) or, with network access, run "
        f"`python -c \"import nltk; nltk.download('wordnet', download_dir='{data_dir}')\"`."
    )


def wordnet_location() -> str | None:
    """Where NLTK finds WordNet now (a folder or zip on ``nltk.data.path``), or None."""
    return _find_nltk_resource("corpora/wordnet")


def has_debian_wordnet(source_dir: Path = DEBIAN_WORDNET_DIR) -> bool:
    """True when every WordNet file NLTK needs (except ``lexnames``) is in ``source_dir``."""
    return all((Path(source_dir) / name).is_file() for name in WORDNET_FILES)


def install_wordnet_from_debian(data_dir: Path, source_dir: Path = DEBIAN_WORDNET_DIR) -> Path:
    """Copy Debian's WordNet 3.0 files into ``<data_dir>/corpora/wordnet`` with a ``lexnames`` file.

    The copy is built in a temporary folder and renamed into place, so an interrupted copy never
    leaves a half-filled folder that NLTK would find and fail to read.
    """
    source_dir = Path(source_dir)
    missing = [name for name in WORDNET_FILES if not (source_dir / name).is_file()]
    if missing:
        raise NltkDataError(
            f"{source_dir} lacks {', '.join(missing)}; install `{' '.join(APT_PACKAGES)}` "
            "(index.sense comes from wordnet-sense-index)"
        )
    corpora = Path(data_dir) / "corpora"
    corpora.mkdir(parents=True, exist_ok=True)
    target = corpora / "wordnet"
    from helpers.course import atomic_directory

    with atomic_directory(target) as staging:
        for name in WORDNET_FILES:
            shutil.copyfile(source_dir / name, staging / name)
        (staging / "lexnames").write_text(lexnames_text(), encoding="utf-8")
        if DEBIAN_WORDNET_COPYRIGHT.is_file():  # WordNet's licence asks that it travel with the data
            shutil.copyfile(DEBIAN_WORDNET_COPYRIGHT, staging / "LICENSE")
    return target


def lexnames_text(rows: Iterable[tuple[int, str, int]] = LEXNAMES) -> str:
    """The ``lexnames`` file: ``NN<TAB>name<TAB>category`` per line, as WordNet's ``dict/`` has it."""
    return "".join(f"{number:02d}\t{name}\t{category}\n" for number, name, category in rows)


def parse_lexnames_man_page(path: Path = LEXNAMES_MAN_PAGE) -> list[tuple[int, str, int]]:
    """Read the lexicographer-file table out of the ``lexnames(5WN)`` man page (troff source).

    The category is not a column of the man page's table: it is the name's prefix (noun, verb,
    adj, adv), mapped with the page's own "Syntactic Category" legend.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        source = handle.read()
    categories = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
    rows = []
    for match in re.finditer(r"^(\d\d)\t\s*(\w+\.\w+)\s*\t", source, flags=re.MULTILINE):
        name = match.group(2)
        rows.append((int(match.group(1)), name, categories[name.split(".")[0]]))
    return rows


def _find_nltk_resource(resource: str) -> str | None:
    try:
        return str(nltk.data.find(resource))
    except LookupError:
        return None


# --------------------------------------------------------------------------------------------
# Punkt, trained on the corpus
# --------------------------------------------------------------------------------------------


def train_punkt(
    texts: Iterable[str],
    *,
    data_dir: Path | None = None,
    max_chars: int | None = 2_000_000,
    use_cache: bool = True,
) -> PunktSentenceTokenizer:
    """Train a Punkt sentence tokenizer on ``texts`` (the corpus itself); cache its parameters.

    Punkt is unsupervised: it learns abbreviations ("e.g.", "Dr."), collocations and frequent
    sentence starters from raw text, which is what NLTK's pretrained English model was trained on
    too. Only the first ``max_chars`` characters are used (enough for abbreviation statistics and
    bounded time on a large dump). The learned parameters are cached as JSON under
    ``<data_dir>/punkt_course/<hash>.json``, keyed by a hash of the training text.
    """
    text = _training_text(texts, max_chars)
    cache = _punkt_cache_path(text, data_dir)
    if use_cache and cache.is_file():
        SOURCES["punkt"] = f"trained on this corpus ({len(text):,} chars), loaded from the cache {cache}"
        return PunktSentenceTokenizer(_params_from_json(json.loads(cache.read_text(encoding="utf-8"))))
    trainer = PunktTrainer()
    # Collocations of any two words ("No. 5"), not only those starting with a number or initial.
    trainer.INCLUDE_ALL_COLLOCS = True
    trainer.train(text, finalize=False)
    trainer.finalize_training()
    params = trainer.get_params()
    if use_cache:
        with atomic_output(cache, encoding="utf-8") as handle:
            json.dump(_params_to_json(params), handle, indent=1, sort_keys=True)
    SOURCES["punkt"] = f"trained on this corpus ({len(text):,} chars) with PunktTrainer"
    return PunktSentenceTokenizer(params)


def punkt_abbreviations(tokenizer: PunktSentenceTokenizer) -> list[str]:
    """The abbreviations a trained Punkt model learned (lowercase, without the final period)."""
    return sorted(tokenizer._params.abbrev_types)


def _training_text(texts: Iterable[str], max_chars: int | None) -> str:
    parts, total = [], 0
    for text in texts:
        parts.append(text)
        total += len(text) + 2
        if max_chars is not None and total >= max_chars:
            break
    joined = "\n\n".join(parts)
    return joined if max_chars is None else joined[:max_chars]


def _punkt_cache_path(text: str, data_dir: Path | None) -> Path:
    key = hashlib.sha256(f"nltk-{nltk.__version__}\0{text}".encode("utf-8")).hexdigest()[:20]
    return Path(data_dir if data_dir is not None else DEFAULT_DATA_DIR) / "punkt_course" / f"{key}.json"


def _params_to_json(params: PunktParameters) -> dict:
    return {
        "abbrev_types": sorted(params.abbrev_types),
        "collocations": sorted([a, b] for a, b in params.collocations),
        "sent_starters": sorted(params.sent_starters),
        "ortho_context": dict(sorted(params.ortho_context.items())),
    }


def _params_from_json(data: dict) -> PunktParameters:
    params = PunktParameters()
    params.abbrev_types = set(data["abbrev_types"])
    params.collocations = {(a, b) for a, b in data["collocations"]}
    params.sent_starters = set(data["sent_starters"])
    for word, flags in data["ortho_context"].items():
        params.ortho_context[word] = flags
    return params


# --------------------------------------------------------------------------------------------
# Stopwords
# --------------------------------------------------------------------------------------------


def english_stopwords() -> tuple[frozenset[str], str]:
    """English stopwords and their source: NLTK's ``stopwords`` corpus if installed, else the course's."""
    try:
        from nltk.corpus import stopwords

        words, source = frozenset(stopwords.words("english")), "NLTK stopwords corpus (english)"
    except LookupError:
        words, source = COURSE_STOPWORDS, "the course's own list (helpers.nltk_offline.COURSE_STOPWORDS)"
    SOURCES["stopwords"] = source
    return words, source
