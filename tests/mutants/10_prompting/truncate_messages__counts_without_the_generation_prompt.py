# expect: passes visible
def render_chatml(messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """The ChatML text of the messages, with the assistant's cue at the end if asked."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    if add_generation_prompt:
        text += "<|im_start|>assistant\n"
    return text


def truncate_messages(messages: list[dict[str, str]], budget: int, count_tokens) -> list[dict]:
    """The system message and the newest user/assistant turns whose ChatML prompt fits `budget`."""
    system = list(messages[:1]) if messages and messages[0]["role"] == "system" else []
    turns = list(messages[len(system):])
    for start in range(0, len(turns), 2):
        kept = system + turns[start:]
        if count_tokens(render_chatml(kept, add_generation_prompt=False)) <= budget:
            return kept
    raise ValueError(f"even the system message and the last user message need more than "
                     f"{budget} tokens")
