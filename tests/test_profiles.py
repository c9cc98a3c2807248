from __future__ import annotations

import pytest

from helpers import profiles


def test_profiles_differ_only_in_parameter_values():
    keys = {name: set(values) for name, values in profiles.PROFILES.items()}
    assert keys["tiny"] == keys["laptop"] == keys["colab"] == keys["full"]
    assert set(profiles.PROFILES) == {"tiny", "laptop", "colab", "full"}


def test_unknown_profile_fails_listing_the_valid_choices():
    with pytest.raises(profiles.UnknownProfileError) as error:
        profiles.get_profile("colab-t4")
    message = str(error.value)
    assert "'colab-t4'" in message and all(name in message for name in ("tiny", "laptop", "colab", "full"))


def test_overrides_replace_values_and_refuse_unknown_keys():
    params = profiles.get_profile("laptop", {"finetune_max_steps": 3, "export_dtypes": ["q8"]})
    assert params["finetune_max_steps"] == 3 and params["export_dtypes"] == ["q8"] and params["profile"] == "laptop"
    assert profiles.get_profile("laptop")["finetune_max_steps"] == 20  # the profile itself is untouched
    with pytest.raises(KeyError, match="finetune_max_stepz"):
        profiles.get_profile("laptop", {"finetune_max_stepz": 3})


def test_laptop_profile_fine_tunes_a_real_instruct_model_with_lora_offline_or_not():
    laptop = profiles.get_profile("laptop")
    assert laptop["model_name"] == laptop["tokenizer_name"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert laptop["finetune_method"] == "lora" and not laptop["hub_offline"]
    assert profiles.resolve_source(laptop["dump_source"]).is_file()  # the shipped corpus: runs offline


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
