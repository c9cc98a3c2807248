"""The one prompt format a model is trained with (chapter 05) and served with (chapter 07).

A fine-tuned model only answers well when it is prompted exactly as it was trained, down to the
last newline. So the format lives here, once, in one of two kinds, chosen by the tokenizer:

- **chat**: a model that ships a chat template (SmolLM2-Instruct: ``<|im_start|>user ... <|im_end|>``)
  is trained and served with *its own* template, through ``tokenizer.apply_chat_template``. The
  template travels in the model's ``tokenizer_config.json``; the browser page hands Transformers.js
  a list of messages and it applies the same template (``prompt_from_template_json`` is the Python
  reference the tests compare with).
- **course**: a model without one (the tiny profile's stand-in, distilgpt2) gets the course's own
  Alpaca-like template, ``PROMPT_TEMPLATE``, which the page fills with a plain string replacement
  (no ``$`` patterns, no formatting language).

``prompt_text`` and ``training_text`` pick the kind; ``write_template`` writes ``prompt_template.json``,
which says which kind the page must use.
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
TEMPLATE_VERSION = 3  # 2: "kind" (course or chat); 3: "add_special_tokens"
KIND_COURSE = "course"
KIND_CHAT = "chat"


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


def uses_chat_template(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` ships a chat template, so the model is prompted with its own (kind "chat")."""
    return bool(getattr(tokenizer, "chat_template", None))


def chat_messages(instruction: str, response: str | None = None) -> list[dict[str, str]]:
    """The conversation of one pair: the user's instruction (trimmed), then the assistant's response if given."""
    messages = [{"role": "user", "content": _clean_instruction(instruction)}]
    if response is not None:
        messages.append({"role": "assistant", "content": response.strip()})
    return messages


def prompt_text(tokenizer: Any, instruction: str) -> str:
    """The text a model sees before it answers ``instruction``, in the kind its tokenizer calls for.

    chat: the tokenizer's chat template with the user's turn and the assistant's opening
    (``add_generation_prompt=True``); course: ``format_prompt(instruction)``.
    """
    if not uses_chat_template(tokenizer):
        return format_prompt(instruction)
    return tokenizer.apply_chat_template(chat_messages(instruction), tokenize=False, add_generation_prompt=True)


def prompt_adds_special_tokens(tokenizer: Any) -> bool:
    """Whether to let the tokenizer add its special tokens to a prompt: not to a chat prompt, which holds them."""
    return not uses_chat_template(tokenizer)


def special_token_text(tokenizer: Any, text: str) -> str | None:
    """The first of the tokenizer's special tokens whose text appears in ``text``, else None.

    A tokenizer reads such text as the token itself, whatever surrounds it: ``<|endoftext|>`` written
    in an article would become a real end of text in the middle of a training answer.
    """
    return next((token for token in tokenizer.all_special_tokens if token and token in text), None)


def training_text(tokenizer: Any, instruction: str, response: str) -> tuple[str, str]:
    """One training example as ``(prompt, answer)``: the model learns to write ``answer`` after ``prompt``.

    The answer is the response followed by the tokenizer's end token, so the model learns to stop.
    chat: the whole conversation rendered by the chat template, cut after the assistant's end token
    (``<|im_end|>``), whose start must be ``prompt_text`` to the byte; course: ``format_training_text``.
    """
    eos = tokenizer.eos_token
    if not uses_chat_template(tokenizer):
        return format_prompt(instruction), format_training_text(instruction, response, eos)[len(format_prompt(instruction)):]
    if not response.strip():
        raise ValueError(f"the response to {instruction!r} is empty: a training example needs an answer")
    prompt = prompt_text(tokenizer, instruction)
    full = tokenizer.apply_chat_template(chat_messages(instruction, response), tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the conversation with another start than the prompt it serves: "
                         "training and serving would differ. Use a tokenizer whose template ends the user's turn the same way")
    answer = full[len(prompt):]
    end = answer.find(eos) if eos else -1
    if end < 0:
        raise ValueError(f"the chat template does not end the assistant's turn with the eos token {eos!r}: "
                         "the model would never learn to stop")
    return prompt, answer[: end + len(eos)]


def answer_from(tokenizer: Any, continuation: str) -> str:
    """The answer in what a model generated after its prompt: up to the eos token or a stop string, trimmed."""
    for stop in (tokenizer.eos_token, *STOP_STRINGS):
        if stop:
            continuation = continuation.split(stop, 1)[0]
    return continuation.strip()


def template_json(tokenizer: Any = None, trained_max_length: int | None = None) -> dict[str, Any]:
    """The prompt format as the JSON the browser page and the model folder read (``prompt_template.json``).

    kind "course" (no tokenizer, or one without a chat template): a client trims the instruction and
    replaces ``placeholder`` in ``template`` by it, literally (in JavaScript
    ``template.split(placeholder).join(instruction)``: ``replace`` with a string would interpret ``$&``
    and friends in what the user typed). kind "chat": a client passes ``[{"role": "user", "content":
    instruction.trim()}]`` to its chat-template implementation (Transformers.js's text-generation
    pipeline does so for a list of messages), with the template of ``tokenizer_config.json``.
    ``add_special_tokens`` says whether the prompt's token ids get the tokenizer's special tokens
    (``prompt_adds_special_tokens``: training did so exactly when it is true); the page passes it to
    the pipeline, and ``prompt_ids_from_template_json`` is the Python reference. ``trained_max_length``
    (chapter 05's: the longest example, prompt and answer, in tokens, it fine-tuned on) is recorded when
    given: the page keeps a conversation within it.
    """
    length = {} if trained_max_length is None else {"trained_max_length": int(trained_max_length)}
    example = "Explain Anarchism."
    if tokenizer is not None and uses_chat_template(tokenizer):
        return length | {
            "format": TEMPLATE_FORMAT,
            "version": TEMPLATE_VERSION,
            "kind": KIND_CHAT,
            "add_special_tokens": prompt_adds_special_tokens(tokenizer),
            "strip_instruction": True,
            "stop_strings": [],
            "example": {"instruction": example, "prompt": prompt_text(tokenizer, example)},
        }
    return length | {
        "format": TEMPLATE_FORMAT,
        "version": TEMPLATE_VERSION,
        "kind": KIND_COURSE,
        "add_special_tokens": tokenizer is None or prompt_adds_special_tokens(tokenizer),
        "template": PROMPT_TEMPLATE,
        "placeholder": PLACEHOLDER,
        "instruction_header": INSTRUCTION_HEADER,
        "response_separator": RESPONSE_SEPARATOR,
        "strip_instruction": True,
        "stop_strings": list(STOP_STRINGS),
        "example": {"instruction": example, "prompt": format_prompt(example)},
    }


def write_template(path: Path | str, tokenizer: Any = None, trained_max_length: int | None = None) -> Path:
    """Write ``template_json(tokenizer, trained_max_length)`` to ``path`` (usually ``.../prompt_template.json``), atomically."""
    from helpers.course import write_json  # here: the template itself needs none of the run machinery

    return write_json(path, template_json(tokenizer, trained_max_length))


def prompt_from_template_json(data: dict[str, Any], instruction: str, tokenizer: Any = None) -> str:
    """Build a prompt from a loaded ``prompt_template.json`` exactly as the browser page does.

    It is the reference for the JavaScript client: the tests check it is byte-identical to what
    training used (``prompt_text``). A chat template needs the model's ``tokenizer``.
    """
    if data.get("format") != TEMPLATE_FORMAT:
        raise ValueError(f"not a prompt template of this course (format {data.get('format')!r})")
    if data.get("kind", KIND_COURSE) == KIND_CHAT:
        if tokenizer is None or not uses_chat_template(tokenizer):
            raise ValueError("prompt_template.json says kind 'chat': pass the model's tokenizer, whose "
                             "tokenizer_config.json holds the chat template")
        return tokenizer.apply_chat_template(chat_messages(instruction), tokenize=False, add_generation_prompt=True)
    if data["template"].count(data["placeholder"]) != 1:
        raise ValueError("the template must hold its placeholder exactly once")
    if data.get("strip_instruction", False):
        instruction = instruction.strip()
    return data["template"].replace(data["placeholder"], instruction)


def prompt_ids_from_template_json(data: dict[str, Any], instruction: str, tokenizer: Any) -> list[int]:
    """The prompt's token ids as the browser page gets them: its text, tokenized as ``add_special_tokens`` says."""
    if not isinstance(data.get("add_special_tokens"), bool):
        raise ValueError("prompt_template.json has no add_special_tokens (an export older than template version 3): "
                         "export the model again (chapter 06)")
    text = prompt_from_template_json(data, instruction, tokenizer)
    return tokenizer(text, add_special_tokens=data["add_special_tokens"])["input_ids"]
