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

**Tools.** `complete(messages, tools=..., tool_choice=...)` returns the whole assistant message
in OpenAI's shape, `{"role": "assistant", "content": str or None, "tool_calls": [...]}`
(`tool_calls` only when the model calls a tool; each with an `id`, `"type": "function"` and
`function.arguments` as a JSON string), ready to append to the history. `tools` are in
OpenAI's format; `tool_choice` is `"auto"` (the model decides), `"required"`, `"none"` or
`{"type": "function", "function": {"name": NAME}}`. The `openai` backend passes both to the
endpoint. The local model knows nothing of tools: the course's convention
(`llmlab.agents.with_tools`) describes them in the system message, and
`llmlab.constrained.generate_tool_reply` keeps any call it writes valid JSON that matches the
tool's parameters (`"auto"`: once the model writes `<tool_call>`; `"required"` and a named
tool: the reply is a call).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from llmlab.chat import ChatModel, Finish

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

    def complete(self, messages: Messages, tools: Sequence[dict] | None = None,
                 tool_choice: Any = "auto", *, max_tokens: int = 256,
                 temperature: float = 0.0, top_p: float | None = None, seed: int | None = None,
                 stop: str | Sequence[str] | None = None) -> dict[str, Any]:
        """The assistant's reply as an OpenAI-shape message, with `tool_calls` when it calls
        one of `tools` (see the module's docstring)."""
        if self.backend == "local":
            return local_complete(self._local, messages, tools, tool_choice,
                                  max_new_tokens=max_tokens, temperature=temperature,
                                  top_p=top_p, seed=seed, stop=stop)
        request = self._request(messages, max_tokens, temperature, top_p, seed, stop)
        if tools:
            request.update(tools=list(tools), tool_choice=tool_choice)
        message = self._client.chat.completions.create(**request).choices[0].message
        reply: dict[str, Any] = {"role": "assistant", "content": message.content}
        if message.tool_calls:
            reply["tool_calls"] = [{"id": call.id, "type": "function",
                                    "function": {"name": call.function.name,
                                                 "arguments": call.function.arguments}}
                                   for call in message.tool_calls]
        return reply

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


def local_complete(chat: ChatModel, messages: Messages, tools: Sequence[dict] | None = None,
                   tool_choice: Any = "auto", *, max_new_tokens: int = 256,
                   temperature: float = 0.0, top_p: float | None = None,
                   seed: int | None = None, stop: str | Sequence[str] | None = None,
                   finish: Finish | None = None) -> dict[str, Any]:
    """`LLM.complete` on a local `ChatModel` (also what `python -m llmlab.serve` runs).

    The tools are written into the system message (`llmlab.agents.with_tools`) unless
    `tool_choice` is `"none"`; the reply is decoded by `llmlab.constrained.generate_tool_reply`
    and its calls parsed by `llmlab.agents.parse_tool_calls`. Call ids are `call_N`, numbered
    after the calls already in `messages`, so they stay unique in a conversation. A call that
    does not parse (cut by `max_new_tokens`) or names a tool not offered leaves the reply as
    plain text. `finish`, if given, says how the reply ended (`reason` is "tool_calls" when it
    holds calls). Raises ValueError for bad tools or tool_choice."""
    from llmlab import agents, constrained

    finish = finish if finish is not None else Finish()
    offered = constrained.chosen_tools(tools, tool_choice) if tools else []
    prompt = agents.with_tools(messages, tools) if offered else list(messages)
    text = constrained.generate_tool_reply(
        chat, chat.prompt_ids(prompt), list(tools) if offered else None, tool_choice,
        max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
        stop=stop, finish=finish)
    calls: list[dict] = []
    if offered:
        names = {tool["function"]["name"] for tool in offered}
        try:
            calls = agents.parse_tool_calls(text)
        except agents.ToolCallError:
            calls = []
        if any(call["name"] not in names for call in calls):
            calls = []
    if not calls:
        return {"role": "assistant", "content": text}
    earlier = sum(len(m.get("tool_calls") or []) for m in messages)
    content = _text_around_calls(text)
    finish.reason = "tool_calls"
    return agents.assistant_message(calls, content or None, first_id=earlier + 1)


def _text_around_calls(text: str) -> str:
    """The reply without its `<tool_call>` blocks (or, for the plain-text fallback, without
    the JSON object that made the call), stripped."""
    from llmlab import agents

    _, spans = agents._parse_text(text)
    return agents._without_spans(text, spans).strip()


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
