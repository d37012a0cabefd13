"""One way to call a model: the course's local chat model or any OpenAI-compatible endpoint.

    >>> from llmlab.llm import LLM
    >>> llm = LLM()                                   # the local model, unless configured
    >>> llm.chat([{"role": "user", "content": "What is the capital of France?"}])
    'The capital of France is Paris.'
    >>> for piece in llm.stream(messages, max_tokens=64): print(piece, end="")
    >>> llm.count_tokens(messages)

**Backends.** `local` runs module 09's `ChatModel` (SmolLM2-135M-Instruct) in this process.
`openai` sends the messages to an OpenAI-compatible endpoint through the official `openai`
package: a real provider, or the course's own model behind `python -m llmlab.serve`.

**Choosing one** is the learner's setting, read from three environment variables when `LLM` is
made (arguments, when given, win):

- `LLMLAB_LLM_BASE_URL` — the endpoint, e.g. `http://127.0.0.1:8000/v1`; when it is set the
  default backend is `openai`, otherwise `local`;
- `LLMLAB_LLM_API_KEY` — the key the endpoint wants (a local server needs none);
- `LLMLAB_LLM_MODEL` — the model name; unset, the endpoint's only model if it lists one.

The `openai` package's own variables (`OPENAI_BASE_URL`, `OPENAI_API_KEY`, `OPENAI_ORG_ID`,
`OPENAI_CUSTOM_HEADERS`, … every `OPENAI_*`) are ignored: they are hidden while the client is
made, so a key or header kept for other work is never sent anywhere by accident.

**Sampling** uses the OpenAI API's names on both backends: `max_tokens`, `temperature`
(default 0: greedy, the same reply every time on the local model), `top_p`, `seed` and `stop`
(a string or a list; the reply ends before the first one).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from llmlab.chat import ChatModel

#: The name the local model goes by (in `LLM.model` and on `python -m llmlab.serve`).
LOCAL_MODEL = "SmolLM2-135M-Instruct"
#: The environment variables that choose the backend.
BASE_URL_VAR, API_KEY_VAR, MODEL_VAR = ("LLMLAB_LLM_BASE_URL", "LLMLAB_LLM_API_KEY",
                                        "LLMLAB_LLM_MODEL")
#: The tiktoken encoding `count_tokens` uses on the `openai` backend.
OPENAI_ENCODING = "cl100k_base"

Backend = Literal["local", "openai"]
Messages = Sequence[dict[str, Any]]


class LLM:
    """A chat model behind one interface: `chat`, `stream` and `count_tokens`.

    `backend` is `"local"` or `"openai"`; unset, it is `"openai"` when a base URL is given (as
    `base_url` or in `LLMLAB_LLM_BASE_URL`) and `"local"` otherwise.
    """

    def __init__(self, backend: Backend | None = None, *, base_url: str | None = None,
                 api_key: str | None = None, model: str | None = None):
        base_url = base_url or os.environ.get(BASE_URL_VAR) or None
        self.backend: Backend = backend or ("openai" if base_url else "local")
        if self.backend == "local":
            self._local = ChatModel.load()
            self.model = LOCAL_MODEL
        elif self.backend == "openai":
            if not base_url:
                raise ValueError(f"the openai backend needs an endpoint: set {BASE_URL_VAR} "
                                 "(e.g. http://127.0.0.1:8000/v1) or pass base_url=")
            import openai

            with _openai_variables_hidden():
                self._client = openai.OpenAI(
                    base_url=base_url, api_key=api_key or os.environ.get(API_KEY_VAR) or "unused")
            self.model = model or os.environ.get(MODEL_VAR) or self._only_model()
        else:
            raise ValueError(f"unknown backend {backend!r}: use 'local' or 'openai'")

    def __repr__(self) -> str:
        return f"LLM(backend={self.backend!r}, model={self.model!r})"

    def chat(self, messages: Messages, *, max_tokens: int = 256, temperature: float = 0.0,
             top_p: float | None = None, seed: int | None = None,
             stop: str | Sequence[str] | None = None) -> str:
        """The assistant's reply to `messages` (dicts with a `role` and a `content`)."""
        if self.backend == "local":
            return self._local.chat(messages, max_new_tokens=max_tokens,
                                    temperature=temperature, top_p=top_p, seed=seed, stop=stop)
        reply = self._client.chat.completions.create(
            **self._request(messages, max_tokens, temperature, top_p, seed, stop))
        return reply.choices[0].message.content or ""

    def stream(self, messages: Messages, *, max_tokens: int = 256, temperature: float = 0.0,
               top_p: float | None = None, seed: int | None = None,
               stop: str | Sequence[str] | None = None) -> Iterator[str]:
        """Yield the reply in pieces as it is made; the pieces join to the whole reply."""
        if self.backend == "local":
            yield from self._local.stream(messages, max_new_tokens=max_tokens,
                                          temperature=temperature, top_p=top_p, seed=seed,
                                          stop=stop)
            return
        with self._client.chat.completions.create(
                **self._request(messages, max_tokens, temperature, top_p, seed, stop),
                stream=True) as chunks:
            for chunk in chunks:
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield choice.delta.content

    def count_tokens(self, text_or_messages: str | Messages) -> int:
        """How many tokens a text, or a list of messages as a prompt, takes.

        `local`: exact, with the model's own tokenizer and chat template. `openai`: an estimate
        with tiktoken's `cl100k_base` encoding (GPT-4's; works offline in this project) — the
        endpoint's model may tokenize differently. Messages count as OpenAI's cookbook does:
        each message's role and content plus 3 tokens of framing, and 3 that start the reply.
        """
        if self.backend == "local":
            return self._local.count_tokens(text_or_messages)
        import tiktoken

        encoding = tiktoken.get_encoding(OPENAI_ENCODING)
        if isinstance(text_or_messages, str):
            return len(encoding.encode(text_or_messages, disallowed_special=()))
        return 3 + sum(3 + sum(len(encoding.encode(str(m.get(key) or ""), disallowed_special=()))
                               for key in ("role", "content"))
                       for m in text_or_messages)

    def _request(self, messages: Messages, max_tokens: int, temperature: float,
                 top_p: float | None, seed: int | None,
                 stop: str | Sequence[str] | None) -> dict[str, Any]:
        """The arguments of `chat.completions.create`; unset options are left out."""
        options = {"top_p": top_p, "seed": seed,
                   "stop": stop if stop is None or isinstance(stop, str) else list(stop)}
        return {"model": self.model, "messages": list(messages), "max_tokens": max_tokens,
                "temperature": temperature,
                **{key: value for key, value in options.items() if value is not None}}

    def _only_model(self) -> str:
        names = [m.id for m in self._client.models.list()]
        if len(names) != 1:
            raise ValueError(f"set {MODEL_VAR} to the model to use: the endpoint lists "
                             f"{len(names)} models ({', '.join(names[:5])})")
        return names[0]


@contextmanager
def _openai_variables_hidden() -> Iterator[None]:
    """Take every `OPENAI_*` variable out of the environment for the block (the `openai`
    package reads them when a client is made), then put them back."""
    hidden = {name: os.environ.pop(name) for name in list(os.environ)
              if name.startswith("OPENAI_")}
    try:
        yield
    finally:
        os.environ.update(hidden)
