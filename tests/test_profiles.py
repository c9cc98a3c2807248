from __future__ import annotations

import pytest

from helpers import profiles
from helpers.profiles import get_profile


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


def test_overrides_of_the_wrong_type_are_refused_naming_what_is_expected():
    from helpers.profiles import check_override_type

    assert get_profile("tiny", {"finetune_learning_rate": 1})["finetune_learning_rate"] == 1  # an int where a float goes
    assert get_profile("tiny", {"max_articles": None, "export_dtypes": ("fp32",)})["max_articles"] is None
    with pytest.raises(TypeError, match=r"max_articles='3' is a str; the profiles give max_articles a None or int"):
        get_profile("tiny", {"max_articles": "3"})
    with pytest.raises(TypeError, match="finetune_max_steps=2.5 is a float"):
        check_override_type("finetune_max_steps", 2.5)
    with pytest.raises(TypeError, match="hub_offline"):
        check_override_type("hub_offline", "yes")


def test_a_notebook_defaults_to_the_colab_profile_on_colab_only(monkeypatch):
    import sys
    import types

    from helpers.profiles import default_profile

    assert default_profile(None) == "tiny" and default_profile("laptop") == "laptop"
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert default_profile(None) == "colab" and default_profile("tiny") == "tiny"


def test_papermill_parameters_named_like_profile_keys_become_overrides():
    from helpers.profiles import injected_overrides

    namespace = {"profile": "tiny", "run_dir": None, "max_articles": 3, "sys": object(), "finetune_max_steps": 2}
    assert injected_overrides(namespace) == {"max_articles": 3, "finetune_max_steps": 2}
    assert get_profile("tiny", injected_overrides(namespace))["max_articles"] == 3
