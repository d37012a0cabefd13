"""`python -m llmlab.serve`, started on a free loopback port and driven by the official client."""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import openai
import pytest

from llmlab import PROJECT_ROOT
from llmlab import prompting as P
from llmlab.chat import ChatModel
from llmlab.llm import LLM, LOCAL_MODEL

pytestmark = pytest.mark.slow

START_TIMEOUT = 120  # seconds: importing torch and loading the model, on a busy machine
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
OTHER = [{"role": "user", "content": "Name three colours."}]


def _tool(name, properties, required, description=""):
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required}}}


TOOLS = [
    _tool("calculator", {"expression": {"type": "string"}}, ["expression"],
          "Evaluate an arithmetic expression, e.g. 2 * (3 + 4)."),
    _tool("convert_units", {"value": {"type": "number"},
                            "from_unit": {"type": "string", "enum": ["km", "mi"]},
                            "to_unit": {"type": "string", "enum": ["km", "mi"]}},
          ["value", "from_unit", "to_unit"], "Convert a distance between km and mi."),
]
ARITHMETIC = [{"role": "user", "content": "What is 17 times 23?"}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/v1/models")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@pytest.fixture(scope="module")
def port(tmp_path_factory) -> int:
    """The port of a server started for this module, stopped at its end."""
    port = _free_port()
    log = Path(tmp_path_factory.mktemp("serve")) / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "llmlab.serve", "--port", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(port):
            assert server.poll() is None, f"the server exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"no answer in {START_TIMEOUT} s: {log.read_text()}"
            time.sleep(0.5)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)


@pytest.fixture(scope="module")
def client(port) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused",
                         max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def model() -> ChatModel:
    """The model in this process, for its tokenizer only: generating here too would make the
    two processes fight over the cores."""
    return ChatModel.load()


def _chat(client: openai.OpenAI, messages=QUESTION, **options):
    return client.chat.completions.create(model=LOCAL_MODEL, messages=messages,
                                          temperature=0, **{"max_tokens": 24, **options})


def _streamed(client: openai.OpenAI, messages=QUESTION, **options) -> list:
    with _chat(client, messages, stream=True, **options) as chunks:
        return list(chunks)


def test_models_lists_the_local_model(client):
    assert [m.id for m in client.models.list()] == [LOCAL_MODEL]


def test_reply_with_usage(client, model):
    reply = _chat(client)
    text = reply.choices[0].message.content
    assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"
    assert "Paris" in text, "the model answers the question"
    assert reply.choices[0].finish_reason == "stop", "a reply that ends by itself says 'stop'"
    usage = reply.usage
    assert usage.prompt_tokens == model.count_tokens(QUESTION), "prompt tokens as the tokenizer"
    assert usage.completion_tokens == model.count_tokens(text), "completion tokens as generated"
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_max_tokens_cuts_the_reply_with_finish_reason_length(client):
    full = _chat(client).choices[0].message.content
    reply = _chat(client, max_tokens=3)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 3
    assert full.startswith(reply.choices[0].message.content), "the reply's first tokens"


def test_stream_joins_to_the_same_reply(client):
    whole = _chat(client)
    chunks = _streamed(client, stream_options={"include_usage": True})
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant", "the first chunk carries the role"
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) > 1, "the reply comes in several pieces"
    assert "".join(pieces) == whole.choices[0].message.content, "pieces join to the reply"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and not any(finishes[:-1]), "the last chunk says why it ended"
    assert chunks[-1].usage == whole.usage, "the usage chunk counts as the whole reply does"


def test_stop_string_ends_the_reply_before_it(client):
    full = _chat(client).choices[0].message.content
    stop = " " + full.split()[2]
    expected = full[: full.index(stop)]
    reply = _chat(client, stop=[stop, "never in this reply"])
    assert reply.choices[0].message.content == expected, "the reply ends before the stop string"
    assert reply.choices[0].finish_reason == "stop"
    pieces = [c.choices[0].delta.content or "" for c in _streamed(client, stop=stop) if c.choices]
    assert "".join(pieces) == expected, "a streamed reply stops there too"


@pytest.mark.parametrize("request_body, field", [
    ({"model": LOCAL_MODEL}, "messages"),
    ({"model": LOCAL_MODEL, "messages": [{"role": "robot", "content": "Hi"}]}, "messages"),
    ({"model": LOCAL_MODEL, "messages": QUESTION, "temperature": "hot"}, "temperature"),
    ({"model": LOCAL_MODEL, "messages": QUESTION, "max_tokens": -1}, "max_tokens"),
    ({"model": LOCAL_MODEL, "messages": QUESTION, "stop": [""]}, "stop"),
    ({"model": LOCAL_MODEL, "messages": QUESTION, "tools": []}, "tools"),
    ({"model": "no-such-model", "messages": QUESTION}, "model"),
    ({"model": LOCAL_MODEL, "messages": QUESTION, "logit_bias": {}}, "logit_bias"),
    ({"model": LOCAL_MODEL, "messages": QUESTION, "tools": [{"type": "function",
                                                              "function": {"name": "a b"}}]},
     "tools"),
    ({"model": LOCAL_MODEL, "messages": QUESTION, "tool_choice": "required"}, "tool_choice"),
    ({"model": LOCAL_MODEL, "messages": QUESTION, "tools": TOOLS,
      "tool_choice": {"type": "function", "function": {"name": "no_such_tool"}}}, "tool_choice"),
    ({"model": LOCAL_MODEL, "messages": QUESTION, "tools": TOOLS, "tool_choice": "sometimes"},
     "tool_choice"),
    ({"model": LOCAL_MODEL, "messages": QUESTION, "tools": [_tool(
        "f", {"x": {"type": "strange"}}, ["x"])]}, "tools"),
    ({"model": LOCAL_MODEL, "messages": QUESTION, "tools": [_tool(
        "f", {"x": {"type": "string", "pattern": "^a"}}, ["x"])]}, "tools"),
], ids=["missing messages", "unknown role", "temperature not a number", "negative max_tokens",
        "empty stop string", "empty tools", "unknown model", "unsupported field",
        "bad tool name", "tool_choice without tools", "unknown named tool", "bad tool_choice",
        "bad schema type", "keyword outside the subset"])
def test_bad_request_gets_an_openai_error_and_the_server_keeps_serving(client, request_body,
                                                                       field):
    with pytest.raises(openai.APIStatusError) as raised:
        client.post("/chat/completions", body=request_body, cast_to=object)
    assert raised.value.status_code in (400, 404, 422)
    error = raised.value.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, "OpenAI's error shape"
    assert error["param"] == field and error["message"], "the error names the bad field"
    assert _chat(client, max_tokens=2).choices[0].message.content, "the server still answers"


def test_two_clients_at_once_each_get_their_own_reply(client):
    alone = [_chat(client).choices[0].message.content,
             _chat(client, OTHER).choices[0].message.content]

    def streamed() -> str:
        return "".join(c.choices[0].delta.content or "" for c in _streamed(client) if c.choices)

    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(streamed)
        second = pool.submit(lambda: _chat(client, OTHER).choices[0].message.content)
        assert [first.result(timeout=120), second.result(timeout=120)] == alone


def test_a_client_that_leaves_mid_stream_does_not_disturb_the_next(client):
    started = time.monotonic()
    alone = _chat(client, OTHER).choices[0].message.content
    alone_seconds = time.monotonic() - started
    story = [{"role": "user", "content": "Write a long story about a dragon."}]
    with _chat(client, story, max_tokens=240, stream=True) as chunks:  # ten times as long
        next(iter(chunks))
    started = time.monotonic()
    assert _chat(client, OTHER).choices[0].message.content == alone
    assert time.monotonic() - started < 3 * alone_seconds + 1, "the abandoned generation stopped"


# -- tools ------------------------------------------------------------------------------------
def _parameters(name):
    return next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == name)


def _valid_call(call):
    """A tool call in OpenAI's shape whose arguments parse and match the tool's schema."""
    assert call.type == "function" and call.id.startswith("call_")
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, _parameters(call.function.name))
    return arguments


def test_tool_round_trip(client):
    """Request with tools -> a call with valid JSON arguments -> the tool's result as a tool
    message -> a final answer, all through the official client."""
    first = _chat(client, ARITHMETIC, tools=TOOLS, tool_choice="required", max_tokens=64)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    arguments = _valid_call(call)
    assert set(arguments) == set(_parameters(call.function.name)["required"])
    history = [*ARITHMETIC, choice.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "391"}]
    final = _chat(client, history, tools=TOOLS, max_tokens=48)
    answer = final.choices[0]
    assert answer.finish_reason in ("stop", "length") and not answer.message.tool_calls
    assert answer.message.content, "a final answer in words (how good: the 135M model's)"
    assert final.usage.prompt_tokens > first.usage.prompt_tokens, "the history is in the prompt"


def test_tool_choice_named_none_and_auto(client):
    named = _chat(client, ARITHMETIC, tools=TOOLS, max_tokens=64,
                  tool_choice={"type": "function", "function": {"name": "convert_units"}})
    (call,) = named.choices[0].message.tool_calls
    assert call.function.name == "convert_units" and _valid_call(call)
    assert named.choices[0].finish_reason == "tool_calls"
    none = _chat(client, ARITHMETIC, tools=TOOLS, tool_choice="none")
    assert not none.choices[0].message.tool_calls and none.choices[0].message.content
    plain = _chat(client, ARITHMETIC).choices[0].message.content
    assert none.choices[0].message.content == plain, "'none': the tools are not offered"
    auto = _chat(client, ARITHMETIC, tools=TOOLS, max_tokens=64)
    message = auto.choices[0].message
    if message.tool_calls:  # the model decides; whatever it does is well formed
        assert auto.choices[0].finish_reason == "tool_calls"
        _valid_call(message.tool_calls[0])
    else:
        assert message.content and auto.choices[0].finish_reason in ("stop", "length")


def test_streamed_tool_call_comes_in_one_delta(client):
    chunks = _streamed(client, ARITHMETIC, tools=TOOLS, tool_choice="required", max_tokens=64,
                       stream_options={"include_usage": True})
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    calls = [d.tool_calls for d in deltas if d.tool_calls]
    assert len(calls) == 1 and len(calls[0]) == 1 and calls[0][0].index == 0
    whole = _chat(client, ARITHMETIC, tools=TOOLS, tool_choice="required", max_tokens=64)
    assert calls[0][0].function.arguments == whole.choices[0].message.tool_calls[0].function \
        .arguments, "the same call as the whole reply's"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage == whole.usage


def test_prompting_bench_asks_an_endpoint_the_same_prompts(port, tmp_path):
    """`bench prompting --endpoint` through the server gives the local model's own greedy
    predictions: the reply-based methods, and the injection attacks under every defence."""
    data = tmp_path / "mine.json"
    items = [{"text": "Great kettle, boils fast.", "label": "positive"},
             {"text": "It broke after a day.", "label": "negative"}] * 2
    data.write_text(json.dumps(items))
    env = {**os.environ, "LLMLAB_LLM_BASE_URL": f"http://127.0.0.1:{port}/v1"}
    proc = subprocess.run([sys.executable, "-m", "llmlab.bench", "prompting", "--endpoint",
                           "--quick", "--sentiment", str(data)], capture_output=True, text=True,
                          timeout=600, cwd=PROJECT_ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["llm"] == {"backend": "openai", "model": LOCAL_MODEL}
    assert set(report["accuracy"]) == {"zero_shot_reply", "k_shot_reply",
                                       "selected_examples_reply"}
    labels = P.SENTIMENT_LABELS
    # the server decodes one reply at a time: so does `LLM("local")` (a `ChatModel` would decode
    # them together, whose bfloat16 rounding may differ)
    local = LLM("local")
    assert report["accuracy"]["zero_shot_reply"] == P.accuracy(
        P.predict_by_reply(local, items, labels), items)
    assert set(report["injection"]) == set(P.DEFENCES) and report["attacks"] == 2
    assert report["injection_window_tokens"] == P.INJECTION_WINDOW == 12
    attacks = P.load_attacks()[:2]
    assert report["injection"]["none"] == P.attack_success_rate(local, attacks, "none")


def test_prompting_bench_endpoint_needs_a_base_url():
    env = {k: v for k, v in os.environ.items() if k != "LLMLAB_LLM_BASE_URL"}
    proc = subprocess.run([sys.executable, "-m", "llmlab.bench", "prompting", "--endpoint",
                           "--quick"], capture_output=True, text=True, timeout=120,
                          cwd=PROJECT_ROOT, env=env)
    assert proc.returncode == 2 and "LLMLAB_LLM_BASE_URL" in proc.stderr
