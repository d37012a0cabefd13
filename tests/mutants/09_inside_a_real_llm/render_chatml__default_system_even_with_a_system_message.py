# expect: fails visible
DEFAULT_SYSTEM_MESSAGE = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def render_chatml(messages, add_generation_prompt=True):
    if not messages:
        raise ValueError("messages must not be empty")
    for message in messages:
        if message["role"] not in ("system", "user", "assistant"):
            raise ValueError(f"unknown role {message['role']!r}")
    messages = [{"role": "system", "content": DEFAULT_SYSTEM_MESSAGE}, *messages]
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    if add_generation_prompt:
        text += "<|im_start|>assistant\n"
    return text
