"""The prompt template: one definition, identical whether formatted in Python or from its JSON."""
from __future__ import annotations

import json

import pytest

from helpers import prompt


def test_prompt_ends_with_the_response_separator_and_holds_the_instruction():
    text = prompt.format_prompt("Explain Albedo.")
    assert text == "### Instruction:\nExplain Albedo.\n\n### Response:\n"
    assert text.endswith(prompt.RESPONSE_SEPARATOR)
    assert prompt.PROMPT_TEMPLATE.count(prompt.PLACEHOLDER) == 1


def test_training_text_is_prompt_then_response_then_eos():
    text = prompt.format_training_text(" Explain Albedo. ", "Albedo is reflectivity.\n", "<|endoftext|>")
    assert text == prompt.format_prompt("Explain Albedo.") + "Albedo is reflectivity.<|endoftext|>"
    assert prompt.split_prompt_response(text, eos_token="<|endoftext|>") == (
        prompt.format_prompt("Explain Albedo."),
        "Albedo is reflectivity.",
    )


def test_split_stops_a_generation_that_starts_another_instruction():
    generated = prompt.format_prompt("Explain Acid.") + "An acid donates protons.\n\n### Instruction:\nMore"
    assert prompt.split_prompt_response(generated)[1] == "An acid donates protons."
    with pytest.raises(ValueError, match="separator"):
        prompt.split_prompt_response("no template here")


@pytest.mark.parametrize("bad", ["", "   \n"])
def test_empty_instruction_or_response_is_refused(bad):
    with pytest.raises(ValueError, match="instruction is empty"):
        prompt.format_prompt(bad)
    with pytest.raises(ValueError, match="response .* is empty"):
        prompt.format_training_text("Explain Acid.", bad, "<|endoftext|>")
    with pytest.raises(ValueError, match="eos_token"):
        prompt.format_training_text("Explain Acid.", "An answer.", "")


def test_json_template_gives_byte_identical_prompts(tmp_path, clean_articles):
    """What the browser builds from prompt_template.json is exactly what the model was trained on."""
    path = prompt.write_template(tmp_path / "prompt_template.json")
    data = json.loads(path.read_bytes().decode("utf-8"))
    assert data["template"] == prompt.PROMPT_TEMPLATE
    assert data["placeholder"] == "{instruction}"
    assert data["response_separator"] == prompt.RESPONSE_SEPARATOR
    assert data["example"]["prompt"] == prompt.format_prompt(data["example"]["instruction"])
    assert "trained_max_length" not in data  # recorded only when chapter 05 gives it
    assert prompt.template_json(trained_max_length=384) == data | {"trained_max_length": 384}
    # Real titles and headings (accents, dashes, non-Latin scripts), plus text a naive JS
    # String.replace would mangle ("$&") and braces str.format would choke on.
    instructions = [f"Tell me about {s['heading'] or 'it'} in {a['title']}" for a in clean_articles for s in a["sections"]]
    instructions += ["  What is $& or $1 in {title}?  ", "Ünïcödé – 日本語 🙂"]
    for instruction in instructions:
        # The JavaScript client: trim, then replace the placeholder literally.
        js_like = data["template"].replace(data["placeholder"], instruction.strip() if data["strip_instruction"] else instruction)
        assert js_like.encode("utf-8") == prompt.format_prompt(instruction).encode("utf-8")
        assert prompt.prompt_from_template_json(data, instruction) == prompt.format_prompt(instruction)


# --- kind "chat": a model with its own chat template is trained and served with it ---


def test_a_tokenizer_with_a_chat_template_is_prompted_with_it(smollm2_tokenizer, course_tokenizer):
    assert prompt.uses_chat_template(smollm2_tokenizer) and not prompt.uses_chat_template(course_tokenizer)
    text = prompt.prompt_text(smollm2_tokenizer, "  Explain Albedo. ")
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                    "<|im_start|>user\nExplain Albedo.<|im_end|>\n<|im_start|>assistant\n")
    assert prompt.prompt_text(course_tokenizer, "Explain Albedo.") == prompt.format_prompt("Explain Albedo.")
    assert not prompt.prompt_adds_special_tokens(smollm2_tokenizer) and prompt.prompt_adds_special_tokens(course_tokenizer)


def test_a_chat_training_text_is_the_prompt_then_the_answer_and_its_end_token(smollm2_tokenizer, course_tokenizer):
    prompt_part, answer = prompt.training_text(smollm2_tokenizer, "Explain Albedo.", " Albedo is reflectivity.\n")
    assert prompt_part == prompt.prompt_text(smollm2_tokenizer, "Explain Albedo.")
    assert answer == "Albedo is reflectivity.<|im_end|>"
    full = smollm2_tokenizer.apply_chat_template(prompt.chat_messages("Explain Albedo.", "Albedo is reflectivity."), tokenize=False)
    assert full.startswith(prompt_part + answer)  # what the template renders, cut after the assistant's end
    assert prompt.training_text(course_tokenizer, "Explain Albedo.", "Albedo is reflectivity.") == (
        prompt.format_prompt("Explain Albedo."), "Albedo is reflectivity.<|endoftext|>")
    with pytest.raises(ValueError, match="empty"):
        prompt.training_text(smollm2_tokenizer, "Explain Albedo.", "  ")
    assert prompt.answer_from(smollm2_tokenizer, " Albedo is light.<|im_end|>\n<|im_start|>user") == "Albedo is light."


def test_chat_template_json_tells_the_page_to_use_the_tokenizers_template(tmp_path, smollm2_tokenizer, clean_articles):
    data = json.loads(prompt.write_template(tmp_path / "prompt_template.json", smollm2_tokenizer).read_text())
    assert data["kind"] == "chat" and "template" not in data and data["stop_strings"] == []
    assert data["example"]["prompt"] == prompt.prompt_text(smollm2_tokenizer, data["example"]["instruction"])
    for instruction in [f"Tell me about {a['title']}" for a in clean_articles] + ["  What is $& or {x}?  ", "日本語 🙂"]:
        assert prompt.prompt_from_template_json(data, instruction, smollm2_tokenizer) == prompt.prompt_text(smollm2_tokenizer, instruction)
    with pytest.raises(ValueError, match="tokenizer"):
        prompt.prompt_from_template_json(data, "Explain Albedo.")
    assert prompt.template_json()["kind"] == "course"


def test_the_pages_prompt_ids_are_the_ids_training_used(tmp_path, course_tokenizer, smollm2_tokenizer):
    """prompt_template.json's add_special_tokens (the page passes it to the pipeline) gives training's ids."""
    import copy

    from tokenizers import processors

    from helpers import finetune

    # A course-template model whose tokenizer adds a start token (as Llama's tokenizers do): the case
    # where tokenizing the prompt without special tokens would serve other ids than training used.
    bos_adding = copy.deepcopy(smollm2_tokenizer)
    bos_adding.chat_template = None
    bos = bos_adding.bos_token
    bos_adding._tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, bos_adding.convert_tokens_to_ids(bos))])
    instruction = "  Explain Albedo. "
    for tokenizer, adds in ((course_tokenizer, True), (smollm2_tokenizer, False), (bos_adding, True)):
        data = json.loads(prompt.write_template(tmp_path / "prompt_template.json", tokenizer).read_text())
        assert data["add_special_tokens"] is adds
        ids = prompt.prompt_ids_from_template_json(data, instruction, tokenizer)
        assert ids == finetune.encode_prompt(tokenizer, instruction)
    assert ids[0] == bos_adding.bos_token_id and ids[1] != bos_adding.bos_token_id
    del data["add_special_tokens"]
    with pytest.raises(ValueError, match="export the model again"):
        prompt.prompt_ids_from_template_json(data, instruction, bos_adding)
