"""NLTK without downloads: WordNet from Debian's files, Punkt trained on the tiny corpus, stopwords."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import nltk
import pytest

from helpers import clean, nltk_offline

needs_debian_wordnet = pytest.mark.skipif(
    not nltk_offline.has_debian_wordnet(),
    reason=f"Debian WordNet files absent: apt-get install {' '.join(nltk_offline.APT_PACKAGES)}",
)


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Every test here runs as CI does: a call to nltk.download fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"nltk.download called in a test: {args} {kwargs}")

    monkeypatch.setattr(nltk, "download", refuse)


@pytest.fixture
def isolated_nltk_path(monkeypatch):
    """An empty nltk.data.path, so only what the test installs can be found."""
    monkeypatch.setattr(nltk.data, "path", [])


def test_lexnames_table_has_the_45_wordnet_3_files():
    text = nltk_offline.lexnames_text()
    lines = text.splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3"
    assert lines[18] == "18\tnoun.person\t1"
    assert lines[-1] == "44\tadj.ppl\t3"
    # The format NLTK's reader parses: "index name category", index equal to the line number.
    for number, line in enumerate(lines):
        index, name, category = line.split()
        assert int(index) == number and category in "1234"


@pytest.mark.skipif(not nltk_offline.LEXNAMES_MAN_PAGE.exists(), reason="lexnames(5WN) man page not installed")
def test_lexnames_table_matches_the_man_page():
    assert nltk_offline.parse_lexnames_man_page() == list(nltk_offline.LEXNAMES)


@needs_debian_wordnet
def test_ensure_nltk_data_builds_wordnet_from_debian_files(tmp_path, isolated_nltk_path):
    data_dir = nltk_offline.ensure_nltk_data(tmp_path)

    assert data_dir == tmp_path and nltk.data.path[0] == str(tmp_path)
    folder = tmp_path / "corpora" / "wordnet"
    for name in (*nltk_offline.WORDNET_FILES, "lexnames"):
        assert (folder / name).is_file(), name
    assert (folder / "lexnames").read_text() == nltk_offline.lexnames_text()
    assert "Debian" in nltk_offline.SOURCES["wordnet"]
    assert nltk.data.find("corpora/wordnet") is not None

    # A fresh reader on exactly this folder: the copy is complete enough for NLTK's own code.
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": no OMW here
        reader = WordNetCorpusReader(str(folder), None)
    assert reader.morphy("geese", "n") == "goose"
    assert reader.morphy("running", "v") == "run"
    assert reader.synsets("dog")[0].lexname() == "noun.animal"
    assert reader.get_version() == "3.0"


@needs_debian_wordnet
def test_a_second_call_finds_the_installed_copy(tmp_path, isolated_nltk_path):
    nltk_offline.ensure_nltk_data(tmp_path)
    stamp = (tmp_path / "corpora" / "wordnet" / "lexnames").stat().st_mtime_ns
    nltk_offline.ensure_nltk_data(tmp_path)
    assert "already installed" in nltk_offline.SOURCES["wordnet"]
    assert (tmp_path / "corpora" / "wordnet" / "lexnames").stat().st_mtime_ns == stamp


@needs_debian_wordnet
def test_lemmatizer_works_offline():
    from nltk.stem import WordNetLemmatizer

    nltk_offline.ensure_nltk_data()
    lemmatizer = WordNetLemmatizer()
    assert lemmatizer.lemmatize("geese") == "goose"
    assert lemmatizer.lemmatize("running", pos="v") == "run"
    assert lemmatizer.lemmatize("better", pos="a") == "good"


def test_without_debian_files_or_network_the_error_says_what_to_install(tmp_path, isolated_nltk_path, monkeypatch):
    monkeypatch.setattr(nltk_offline, "DEBIAN_WORDNET_DIR", tmp_path / "no-wordnet-here")
    with pytest.raises(nltk_offline.NltkDataError) as error:
        nltk_offline.ensure_nltk_data(tmp_path / "data")
    message = str(error.value)
    assert "apt-get install -y wordnet-base wordnet-sense-index" in message
    assert "nltk.download('wordnet'" in message


def test_online_users_keep_nltk_download(tmp_path, isolated_nltk_path, monkeypatch):
    """No Debian files: the normal nltk.download path is taken (faked here, nothing is fetched)."""
    monkeypatch.setattr(nltk_offline, "DEBIAN_WORDNET_DIR", tmp_path / "no-wordnet-here")
    calls = []

    def fake_download(name, download_dir, **kwargs):
        calls.append((name, download_dir))
        (Path(download_dir) / "corpora" / "wordnet").mkdir(parents=True)
        return True

    monkeypatch.setattr(nltk, "download", fake_download)
    nltk_offline.ensure_nltk_data(tmp_path)
    assert calls == [("wordnet", str(tmp_path))]
    assert "nltk.download" in nltk_offline.SOURCES["wordnet"]


def test_incomplete_debian_folder_is_refused(tmp_path):
    (tmp_path / "data.noun").write_text("")
    assert not nltk_offline.has_debian_wordnet(tmp_path)
    with pytest.raises(nltk_offline.NltkDataError, match="wordnet-sense-index"):
        nltk_offline.install_wordnet_from_debian(tmp_path / "out", tmp_path)


# --- Punkt --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_paragraphs(tiny_articles) -> list[str]:
    return list(clean.iter_paragraphs(tiny_articles))


@pytest.fixture(scope="module")
def punkt(corpus_paragraphs, tmp_path_factory):
    return nltk_offline.train_punkt(corpus_paragraphs, data_dir=tmp_path_factory.mktemp("punkt"))


def test_punkt_learns_the_corpus_abbreviations(punkt):
    learned = set(nltk_offline.punkt_abbreviations(punkt))
    # All of these occur in the tiny corpus; Punkt found them without any list given to it.
    assert {"e.g", "i.e", "u.s", "etc", "dr", "mrs"} <= learned


def test_punkt_does_not_split_after_e_g_or_i_e_in_real_text(punkt, corpus_paragraphs):
    with_abbreviations = [p for p in corpus_paragraphs if "e.g. " in p or "i.e. " in p]
    assert len(with_abbreviations) >= 10
    for paragraph in with_abbreviations:
        for sentence in punkt.tokenize(paragraph):
            assert not sentence.endswith(("e.g.", "i.e.")), sentence


def test_punkt_splits_a_real_paragraph_into_its_sentences(punkt, tiny_articles):
    albedo = next(a for a in tiny_articles if a["title"] == "Albedo")
    paragraph = next(p for p in clean.split_paragraphs(albedo["sections"][0]["text"]) if p.startswith("The albedo is"))
    sentences = punkt.tokenize(paragraph)
    assert len(sentences) >= 2
    assert all(clean.ends_sentence(sentence) for sentence in sentences)
    assert " ".join(sentences) == " ".join(paragraph.split())


def test_punkt_parameters_are_cached_by_corpus(corpus_paragraphs, tmp_path):
    first = nltk_offline.train_punkt(corpus_paragraphs[:200], data_dir=tmp_path)
    cached = list((tmp_path / "punkt_course").glob("*.json"))
    assert len(cached) == 1
    assert "e.g" in json.loads(cached[0].read_text())["abbrev_types"]

    again = nltk_offline.train_punkt(corpus_paragraphs[:200], data_dir=tmp_path)
    assert "loaded from the cache" in nltk_offline.SOURCES["punkt"]
    assert again._params.abbrev_types == first._params.abbrev_types
    assert again._params.ortho_context == first._params.ortho_context

    nltk_offline.train_punkt(corpus_paragraphs[:100], data_dir=tmp_path)  # another corpus, another key
    assert len(list((tmp_path / "punkt_course").glob("*.json"))) == 2


# --- stopwords ----------------------------------------------------------------------------------


def test_stopwords_fall_back_to_the_course_list(isolated_nltk_path):
    words, source = nltk_offline.english_stopwords()
    assert words is nltk_offline.COURSE_STOPWORDS and "course" in source
    assert {"the", "and", "of", "is", "which", "not"} <= words
    assert not {"albedo", "language", "war"} & words
