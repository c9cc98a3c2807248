from __future__ import annotations

import pytest

from helpers import profiles


def test_profiles_differ_only_in_parameter_values():
    keys = {name: set(values) for name, values in profiles.PROFILES.items()}
    assert keys["tiny"] == keys["colab"] == keys["full"]
    assert set(profiles.PROFILES) == {"tiny", "colab", "full"}


def test_unknown_profile_fails_listing_the_valid_choices():
    with pytest.raises(profiles.UnknownProfileError) as error:
        profiles.get_profile("colab-t4")
    message = str(error.value)
    assert "'colab-t4'" in message and all(name in message for name in ("tiny", "colab", "full"))


def test_get_profile_returns_a_copy_named_after_the_profile():
    first = profiles.get_profile("tiny")
    first["split_fractions"]["train"] = 0.0
    assert profiles.get_profile("tiny")["split_fractions"]["train"] == 0.8
    assert first["profile"] == "tiny"


def test_tiny_profile_reads_the_corpus_shipped_in_the_repository():
    source = profiles.resolve_source(profiles.get_profile("tiny")["dump_source"])
    assert source.is_file() and profiles.REPO_ROOT / "data" in source.parents


def test_colab_profile_downloads_simple_wikipedias_multistream_dump():
    colab = profiles.get_profile("colab")
    assert profiles.resolve_source(colab["dump_source"]).endswith("simplewiki-latest-pages-articles-multistream.xml.bz2")
    assert colab["dump_index_source"].endswith("multistream-index.txt.bz2")


def test_missing_local_input_fails_at_once_saying_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="data/tiny"):
        profiles.resolve_source("data/tiny/nope.xml.bz2", root=tmp_path)
