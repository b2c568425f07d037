"""Test stand-in (not SGLang): token counts and deterministic generated text.

A "token" here is a whitespace-separated word (or one id of input_ids). Generated text repeats the prompt's words
in order (an echo), so answers are predictable in tests, and it is exactly max_tokens long when the request asks
to ignore EOS (as benchmarks do); otherwise it stops after the echo plus a short tail.
"""

from __future__ import annotations

FILLER = ["the", "stand", "in", "answers", "deterministically"]
# Tokens a chat template adds around each message, roughly as DeepSeek's does.
CHAT_TOKENS_PER_MESSAGE = 4


def count_tokens(text) -> int:
    if isinstance(text, list):
        return len(text)
    return len(str(text).split())


def chat_prompt(messages) -> tuple[str, int]:
    """The text of a chat's messages and its token count (content words plus the template's tokens)."""
    parts = []
    for message in messages or []:
        content = message.get("content", "") if isinstance(message, dict) else ""
        if isinstance(content, list):  # OpenAI content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(str(content))
    text = " ".join(parts)
    return text, count_tokens(text) + CHAT_TOKENS_PER_MESSAGE * max(1, len(parts))


def generate(prompt, max_tokens: int, ignore_eos: bool) -> list[str]:
    """The generated tokens (each a word with its leading space, except the first)."""
    words = [f"tok{t}" for t in prompt] if isinstance(prompt, list) else str(prompt).split()
    words = words or FILLER
    natural = len(words) + len(FILLER)
    length = max_tokens if ignore_eos else min(max_tokens, natural)
    source = words + FILLER
    return [(" " if i else "") + source[i % len(source)] for i in range(max(0, length))]
