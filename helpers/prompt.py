"""The one prompt template the model is trained with (chapter 05) and served with (chapter 07).

A fine-tuned model only answers well when it is prompted exactly as it was trained, down to the
last newline. So the template lives here, once: training formats its texts with
``format_training_text``, and the browser page reads the same template from the
``prompt_template.json`` that ``write_template`` puts beside the data and the model, and fills it
with a plain string replacement (no ``$`` patterns, no formatting language) that
``prompt_from_template_json`` reproduces in Python for the tests.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

PLACEHOLDER = "{instruction}"
INSTRUCTION_HEADER = "### Instruction:\n"
RESPONSE_SEPARATOR = "### Response:\n"

# Alpaca-like: headers a small model learns quickly, and a response that starts right after the
# separator so that generation continues from the prompt without any extra token.
PROMPT_TEMPLATE = f"{INSTRUCTION_HEADER}{PLACEHOLDER}\n\n{RESPONSE_SEPARATOR}"

# A model that has not yet learned to emit its end-of-text token tends to start a new instruction;
# cutting there keeps a served answer to the one response it was asked for.
STOP_STRINGS = ("### Instruction:", "### Response:")

TEMPLATE_FORMAT = "corpus-to-client/prompt-template"
TEMPLATE_VERSION = 1


def _clean_instruction(instruction: str) -> str:
    # Whitespace around a typed question is noise; the page trims it too (``strip_instruction``).
    instruction = instruction.strip()
    if not instruction:
        raise ValueError("the instruction is empty: a prompt needs a question or a task")
    return instruction


def format_prompt(instruction: str) -> str:
    """The text the model sees before it answers ``instruction`` (ends with the response separator).

    The instruction is stripped of surrounding whitespace; an empty one raises ``ValueError``.
    """
    return PROMPT_TEMPLATE.replace(PLACEHOLDER, _clean_instruction(instruction))


def format_training_text(instruction: str, response: str, eos_token: str) -> str:
    """One training example: the prompt, the response, then ``eos_token`` so the model learns to stop."""
    response = response.strip()
    if not response:
        raise ValueError(f"the response to {instruction!r} is empty: a training example needs an answer")
    if not eos_token:
        raise ValueError("eos_token is empty: pass the tokenizer's eos_token (e.g. '<|endoftext|>')")
    return format_prompt(instruction) + response + eos_token


def split_prompt_response(text: str, eos_token: str | None = None) -> tuple[str, str]:
    """Split a training text or a generation into ``(prompt, response)``.

    The prompt keeps the response separator, so ``prompt + response`` is the text up to where the
    response ends. The response stops at ``eos_token`` (when given) and at any ``STOP_STRINGS``
    the model went on to write, and is stripped. Raises ``ValueError`` when there is no separator.
    """
    cut = text.find(RESPONSE_SEPARATOR)
    if cut < 0:
        raise ValueError(f"no response separator {RESPONSE_SEPARATOR!r} in the text: is it a prompt of this course?")
    prompt, response = text[: cut + len(RESPONSE_SEPARATOR)], text[cut + len(RESPONSE_SEPARATOR):]
    for stop in ((eos_token,) if eos_token else ()) + STOP_STRINGS:
        response = response.split(stop, 1)[0]
    return prompt, response.strip()


def template_json() -> dict[str, Any]:
    """The template as the JSON the browser page and the model folder read (``prompt_template.json``).

    A client builds a prompt by trimming the instruction and replacing ``placeholder`` in ``template``
    by it, literally (in JavaScript ``template.split(placeholder).join(instruction)``: ``replace``
    with a string would interpret ``$&`` and friends in what the user typed).
    """
    return {
        "format": TEMPLATE_FORMAT,
        "version": TEMPLATE_VERSION,
        "template": PROMPT_TEMPLATE,
        "placeholder": PLACEHOLDER,
        "instruction_header": INSTRUCTION_HEADER,
        "response_separator": RESPONSE_SEPARATOR,
        "strip_instruction": True,
        "stop_strings": list(STOP_STRINGS),
        "example": {"instruction": "Explain Anarchism.", "prompt": format_prompt("Explain Anarchism.")},
    }


def write_template(path: Path | str) -> Path:
    """Write ``template_json()`` to ``path`` (usually ``.../prompt_template.json``), atomically."""
    from helpers.course import write_json  # here: the template itself needs none of the run machinery

    return write_json(path, template_json())


def prompt_from_template_json(data: dict[str, Any], instruction: str) -> str:
    """Build a prompt from a loaded ``prompt_template.json`` exactly as the browser page does.

    It is the reference for the JavaScript client: the tests check it is byte-identical to
    ``format_prompt``.
    """
    if data.get("format") != TEMPLATE_FORMAT:
        raise ValueError(f"not a prompt template of this course (format {data.get('format')!r})")
    if data["template"].count(data["placeholder"]) != 1:
        raise ValueError("the template must hold its placeholder exactly once")
    if data.get("strip_instruction", False):
        instruction = instruction.strip()
    return data["template"].replace(data["placeholder"], instruction)
