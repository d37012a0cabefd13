"""The course's chat model behind an OpenAI-compatible HTTP server, on loopback by default.

    python -m llmlab.serve [--host 127.0.0.1] [--port 8000] [--dtype bfloat16]

then any tool that speaks the OpenAI API can use it, e.g. the official client:

    >>> import openai
    >>> client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    >>> client.chat.completions.create(model="SmolLM2-135M-Instruct", temperature=0,
    ...     messages=[{"role": "user", "content": "Hello"}]).choices[0].message.content

or `LLM()` from `llmlab.llm` with `LLMLAB_LLM_BASE_URL=http://127.0.0.1:8000/v1`.

**Endpoints.** `GET /v1/models` lists the one model. `POST /v1/chat/completions` takes
`model`, `messages`, `temperature` (0–2, default 1 as in OpenAI's API; 0 is greedy), `top_p`,
`max_tokens` (or `max_completion_tokens`; default: the room left in the context), `stop` (a
string or up to 4), `seed`, `n` (only 1) and `stream` (server-sent events in OpenAI's
`chat.completion.chunk` format: the first chunk carries the role, the last the finish reason,
then `data: [DONE]`; `stream_options.include_usage` adds a usage chunk). Replies carry `usage`
(prompt tokens as the model's tokenizer counts the rendered prompt; completion tokens as
generated, the end-of-turn token not counted) and `finish_reason`: `stop` (end of turn or a
stop string) or `length` (`max_tokens` or the context ran out).

**Tools.** `tools` (OpenAI's format: `{"type": "function", "function": {"name",
"description", "parameters"}}`) and `tool_choice` (`"auto"`, the default; `"required"`;
`"none"`; or `{"type": "function", "function": {"name": NAME}}`) work as in OpenAI's API:
a reply that calls a tool has `message.tool_calls` (`id`, `type`, `function.name`,
`function.arguments` as a JSON string) and `finish_reason: "tool_calls"`; the request's history
may hold assistant messages with `tool_calls` and `tool` messages with the results. The model
sees the tools in its system message (`llmlab.agents.with_tools`) and every call it starts is
kept valid by constrained decoding (`llmlab.constrained`): it parses, names an offered tool and
matches that tool's `parameters` (the schema subset `llmlab.constrained` states; a schema
outside it, or a named tool that is not offered, gets 400). With tools, a streamed reply comes
in one piece: the content, or the call, in a single delta. A reply holds at most one call
(`parallel_tool_calls` is accepted and has no effect).

**Errors** have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`: a malformed
request gets 400 naming the bad field, an unknown model 404; the server keeps serving.

**One generation at a time.** The model keeps KV caches between prompts (prefix reuse) and is
not thread-safe, so one worker thread runs every generation; concurrent requests wait their
turn and each gets the reply it would get alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException

from llmlab.chat import DEFAULT_DTYPE, ChatModel, Finish
from llmlab.constrained import SchemaError, tool_call_grammar
from llmlab.llm import LOCAL_MODEL, local_complete

#: `stop`: a string or a list of up to 4, never empty ones; a string is read as a list of one.
StopStrings = Annotated[list[Annotated[str, StringConstraints(min_length=1)]],
                        BeforeValidator(lambda value: [value] if isinstance(value, str) else value),
                        Field(max_length=4)]


# -- the request --------------------------------------------------------------------------------
class Message(BaseModel):
    """One chat message; `tool_calls` and `tool_call_id` carry a tool round trip's history."""

    model_config = ConfigDict(extra="forbid")
    role: str
    content: str | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolSpec(BaseModel):
    """One tool in OpenAI's format (only functions)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    function: FunctionSpec


class NamedChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    function: dict[str, str]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The body of `POST /v1/chat/completions`; any other field is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")
    model: str
    messages: list[Message]
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: StopStrings | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: Annotated[list[ToolSpec], Field(min_length=1, max_length=128)] | None = None
    tool_choice: Literal["auto", "required", "none"] | NamedChoice | None = None
    parallel_tool_calls: bool | None = None


# -- running the model --------------------------------------------------------------------------
class ModelWorker:
    """Runs generations on one model, one at a time, in a thread of its own."""

    def __init__(self, model: ChatModel):
        self.model = model
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmlab-model")

    async def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`function(*args, **kwargs)` in the model's thread, in turn with the generations."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: function(*args, **kwargs))

    async def generate(self, messages: list[dict], **sampling: Any
                       ) -> AsyncIterator[str | Finish]:
        """The reply's pieces as they are made, then its `Finish`. Errors (a `ValueError` for
        bad messages) come from the first step. Closing the iterator stops the generation."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[str | Finish | Exception] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(event: str | Finish | Exception) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        self._thread.submit(self._run, messages, sampling, emit, cancelled)
        try:
            while True:
                event = await events.get()
                if isinstance(event, Exception):
                    raise event
                yield event
                if isinstance(event, Finish):
                    return
        finally:
            cancelled.set()

    def _run(self, messages: list[dict], sampling: dict[str, Any],
             emit: Callable[[str | Finish | Exception], None], cancelled: threading.Event
             ) -> None:
        if cancelled.is_set():  # the client left while waiting its turn
            return
        finish = Finish()
        try:
            for piece in self.model.stream(messages, **sampling, finish=finish):
                if cancelled.is_set():
                    return
                emit(piece)
            emit(finish)
        except Exception as error:  # handed to the request's coroutine, which raises it
            emit(error)


# -- the app ------------------------------------------------------------------------------------
def create_app(model: ChatModel, model_id: str = LOCAL_MODEL) -> FastAPI:
    """The FastAPI app serving `model` under the name `model_id`."""
    app = FastAPI(title="LLM Lab", summary="The course's chat model, OpenAI-compatible")
    worker = ModelWorker(model)
    started = int(time.time())

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        fields = [_field(p["loc"]) for p in problems]
        message = "; ".join(f"{_where(p['loc'])}: {p['msg']}" for p in problems)
        return _error(400, message, param=next((f for f in fields if f), None),
                      code=problems[0]["type"] if problems else None)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"the server failed: {exc!r}")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": model_id, "object": "model",
                                            "created": started, "owned_by": "llmlab"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: ChatCompletionRequest
                               ) -> JSONResponse | StreamingResponse:
        if request.model != model_id:
            return _error(404, f"the model {request.model!r} does not exist; this server has "
                          f"{model_id!r}", param="model", code="model_not_found")
        messages = [m.model_dump(exclude_none=True) for m in request.messages]
        if request.tool_choice is not None and not request.tools:
            return _error(400, "tool_choice is only allowed when tools are given",
                          param="tool_choice")
        if request.tools and request.tool_choice != "none":
            return await _with_tools(request, messages)
        events = worker.generate(messages, **_sampling(request, model.context_length))
        try:
            first = await anext(events)
        except ValueError as error:
            return _error(400, str(error), param="messages")
        reply = _Reply(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model_id)
        if request.stream:
            usage = request.stream_options is not None and request.stream_options.include_usage
            return StreamingResponse(reply.sse(first, events, usage),
                                     media_type="text/event-stream")
        pieces = [first]
        async for event in events:
            pieces.append(event)
        return JSONResponse(reply.completion(pieces))

    async def _with_tools(request: ChatCompletionRequest, messages: list[dict]
                          ) -> JSONResponse | StreamingResponse:
        tools = [tool.model_dump(exclude_none=True) for tool in request.tools]
        choice = request.tool_choice or "auto"
        if isinstance(choice, NamedChoice):
            choice = choice.model_dump()
        try:
            tool_call_grammar(tools, choice)  # checks the schemas and the named tool
        except SchemaError as error:
            return _error(400, f"tools: {error}", param="tools", code="invalid_schema")
        except ValueError as error:
            return _error(400, str(error), param="tool_choice")
        finish = Finish()
        try:
            message = await worker.call(local_complete, model, messages, tools, choice,
                                        **_sampling(request, model.context_length),
                                        finish=finish)
        except ValueError as error:
            return _error(400, str(error), param="messages")
        reply = _Reply(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model_id)
        if request.stream:
            usage = request.stream_options is not None and request.stream_options.include_usage
            return StreamingResponse(reply.sse_message(message, finish, usage),
                                     media_type="text/event-stream")
        return JSONResponse(reply.completion_message(message, finish))

    return app


def _sampling(request: ChatCompletionRequest, context_length: int) -> dict[str, Any]:
    """`ChatModel.stream`'s options for `request` (no `max_tokens`: as far as the context goes)."""
    return {"max_new_tokens": request.max_completion_tokens or request.max_tokens
            or context_length, "temperature": request.temperature,
            "top_p": request.top_p if request.top_p < 1 else None, "seed": request.seed,
            "stop": request.stop}


@dataclass
class _Reply:
    """The response's shape: a whole `chat.completion`, or a stream of chunks."""

    id: str
    created: int
    model: str

    def completion(self, events: list[str | Finish]) -> dict:
        *pieces, finish = events
        assert isinstance(finish, Finish)
        return {**self._head("chat.completion"),
                "choices": [{"index": 0, "message": {"role": "assistant",
                                                     "content": "".join(map(str, pieces))},
                             "finish_reason": finish.reason, "logprobs": None}],
                "usage": _usage(finish)}

    def completion_message(self, message: dict, finish: Finish) -> dict:
        """A whole `chat.completion` holding an assistant message (maybe with tool calls)."""
        return {**self._head("chat.completion"),
                "choices": [{"index": 0, "message": _message(message),
                             "finish_reason": finish.reason, "logprobs": None}],
                "usage": _usage(finish)}

    async def sse_message(self, message: dict, finish: Finish,
                          include_usage: bool) -> AsyncIterator[str]:
        """A whole message as a stream: the role, the content or the calls in one delta, the
        finish reason (then the usage chunk if asked, and `[DONE]`)."""
        yield self._chunk({"role": "assistant", "content": ""})
        if message.get("content"):
            yield self._chunk({"content": message["content"]})
        if message.get("tool_calls"):
            yield self._chunk({"tool_calls": [{"index": i, **call} for i, call
                                              in enumerate(message["tool_calls"])]})
        yield self._chunk({}, finish.reason)
        if include_usage:
            yield _event({**self._head("chat.completion.chunk"), "choices": [],
                          "usage": _usage(finish)})
        yield "data: [DONE]\n\n"

    async def sse(self, first: str | Finish, events: AsyncIterator[str | Finish],
                  include_usage: bool) -> AsyncIterator[str]:
        yield self._chunk({"role": "assistant", "content": ""})
        event = first
        try:
            while isinstance(event, str):
                yield self._chunk({"content": event})
                event = await anext(events)
        finally:  # the client may have gone: stop the generation
            await events.aclose()
        yield self._chunk({}, event.reason)
        if include_usage:
            yield _event({**self._head("chat.completion.chunk"), "choices": [],
                          "usage": _usage(event)})
        yield "data: [DONE]\n\n"

    def _head(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> str:
        return _event({**self._head("chat.completion.chunk"),
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                                    "logprobs": None}]})


def _message(message: dict) -> dict:
    """An assistant message as a response carries it: `content` always present (None when
    the reply is only a call), `tool_calls` when there are calls."""
    out = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        out["tool_calls"] = message["tool_calls"]
    return out


def _usage(finish: Finish) -> dict:
    return {"prompt_tokens": finish.prompt_tokens,
            "completion_tokens": finish.completion_tokens,
            "total_tokens": finish.prompt_tokens + finish.completion_tokens}


def _event(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _field(loc: Sequence[int | str]) -> str | None:
    """The request field an error location points to: ('body', 'messages', 0, 'role') →
    'messages'; None for the body as a whole."""
    return loc[1] if len(loc) > 1 and isinstance(loc[1], str) else None


def _where(loc: Sequence[int | str]) -> str:
    """An error location as the message names it: 'messages.0.role', or 'body at character 7'
    when the body is not valid JSON."""
    if len(loc) > 1 and isinstance(loc[1], int):
        return f"body at character {loc[1]}"
    return ".".join(map(str, loc[1:])) or "body"


def _error(status: int, message: str, param: str | None = None,
           code: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": code}}, status_code=status)


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m llmlab.serve", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dtype", choices=["bfloat16", "float32"],
                        help="dense weights in this dtype (default: the course's model, "
                             f"{str(DEFAULT_DTYPE).removeprefix('torch.')} on this CPU, "
                             "decoding from 4-bit weights)")
    args = parser.parse_args(argv)
    model = ChatModel.load(getattr(torch, args.dtype) if args.dtype else None)
    print(f"serving {LOCAL_MODEL} on http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.run(create_app(model), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
