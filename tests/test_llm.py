"""`LLM`: the local backend is `ChatModel`; the openai backend, tried against the course's own
server (in this process, on loopback), gives the same replies; the backend comes from the
LLMLAB_LLM_* variables and never from OPENAI_*."""

import json
import os
import socket
import threading
import time

import pytest
import tiktoken
import uvicorn

from llmlab.chat import ChatModel
from llmlab.llm import API_KEY_VAR, BASE_URL_VAR, LLM, LOCAL_MODEL, MODEL_VAR
from llmlab.serve import create_app

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
SAMPLED = {"max_tokens": 8, "temperature": 0.8, "top_p": 0.9, "seed": 3}


@pytest.fixture(autouse=True)
def no_llm_settings(monkeypatch):
    """Every test starts with no LLMLAB_LLM_* setting, as the learner's default is."""
    for name in (BASE_URL_VAR, API_KEY_VAR, MODEL_VAR):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def model() -> ChatModel:
    return ChatModel.load()


@pytest.fixture(scope="module")
def server(model):
    """The base URL of `llmlab.serve`'s app over `model`, served from a thread; and the list
    of the headers of every request it got."""
    app = create_app(model)
    headers: list[dict[str, str]] = []

    @app.middleware("http")
    async def record_headers(request, call_next):
        headers.append(dict(request.headers))
        return await call_next(request)

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1", headers
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        listener.close()


def test_local_backend_is_the_chat_model(model):
    llm = LLM("local")
    assert llm.backend == "local" and llm.model == LOCAL_MODEL
    assert llm.chat(QUESTION, max_tokens=16) == model.chat(QUESTION, max_new_tokens=16)
    assert llm.chat(QUESTION, stop=" is", **SAMPLED) == model.chat(
        QUESTION, max_new_tokens=8, temperature=0.8, top_p=0.9, seed=3, stop=" is")
    assert "".join(llm.stream(QUESTION, max_tokens=16)) == llm.chat(QUESTION, max_tokens=16)
    assert llm.count_tokens(QUESTION) == model.count_tokens(QUESTION)
    assert llm.count_tokens("Hello there") == model.count_tokens("Hello there")


def test_backend_comes_from_the_llmlab_variables(monkeypatch, server):
    base_url, _ = server
    assert LLM().backend == "local", "nothing set: the local model"
    monkeypatch.setenv(BASE_URL_VAR, base_url)
    llm = LLM()
    assert (llm.backend, llm.model) == ("openai", LOCAL_MODEL), "the endpoint's only model"
    monkeypatch.setenv(MODEL_VAR, "some-model")
    assert LLM().model == "some-model"
    assert LLM(model="other").model == "other", "an argument wins over the variable"
    assert LLM("local").backend == "local", "the backend can be chosen anyway"


def test_bad_backends_say_what_to_do():
    with pytest.raises(ValueError, match=BASE_URL_VAR):
        LLM("openai")
    with pytest.raises(ValueError, match="unknown backend"):
        LLM("anthropic")


def test_openai_variables_are_ignored(monkeypatch, server):
    base_url, headers = server
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-to-be-sent")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-not-to-be-sent")
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "X-Not-To-Be-Sent: 1")
    assert LLM().backend == "local", "OPENAI_BASE_URL does not choose the openai backend"
    monkeypatch.setenv(BASE_URL_VAR, base_url)
    monkeypatch.setenv(API_KEY_VAR, "the-learners-key")
    headers.clear()
    llm = LLM()
    assert llm.chat(QUESTION, max_tokens=2), "the LLMLAB_LLM_BASE_URL endpoint answers"
    assert headers and all(h["authorization"] == "Bearer the-learners-key" for h in headers)
    sent = " ".join(f"{k}: {v}" for h in headers for k, v in h.items())
    assert "not-to-be-sent" not in sent.lower(), "no OPENAI_* value reaches the endpoint"
    assert os.environ["OPENAI_API_KEY"] == "sk-not-to-be-sent", "the variables are kept"


def test_openai_backend_on_the_local_server_replies_as_the_model(monkeypatch, server, model):
    monkeypatch.setenv(BASE_URL_VAR, server[0])
    llm, local = LLM(), LLM("local")
    reply = llm.chat(QUESTION, max_tokens=16)
    assert reply == local.chat(QUESTION, max_tokens=16), "greedy: the same reply"
    assert "".join(llm.stream(QUESTION, max_tokens=16)) == reply, "pieces join to the reply"
    assert llm.chat(QUESTION, stop=[" is"], **SAMPLED) == local.chat(QUESTION, stop=[" is"],
                                                                      **SAMPLED)


def test_openai_backend_counts_with_tiktoken(monkeypatch, server):
    monkeypatch.setenv(BASE_URL_VAR, server[0])
    llm, encoding = LLM(), tiktoken.get_encoding("cl100k_base")
    text = "What is the capital of France?"
    assert llm.count_tokens(text) == len(encoding.encode(text))
    assert llm.count_tokens(QUESTION) == 3 + 3 + len(encoding.encode("user")) + \
        len(encoding.encode(text)), "role, content and 3 per message, 3 for the reply"


TOOLS = [{"type": "function", "function": {
    "name": "calculator", "description": "Evaluate an arithmetic expression.",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                   "required": ["expression"]}}}]
ARITHMETIC = [{"role": "user", "content": "What is 17 times 23?"}]


def test_complete_with_tools_is_the_same_message_on_both_backends(monkeypatch, server):
    local = LLM("local").complete(ARITHMETIC, tools=TOOLS, tool_choice="required",
                                  max_tokens=48)
    assert local["role"] == "assistant" and local["content"] is None
    (call,) = local["tool_calls"]
    assert call["id"] == "call_1" and call["type"] == "function"
    assert call["function"]["name"] == "calculator"
    assert isinstance(json.loads(call["function"]["arguments"])["expression"], str)
    remote = LLM(base_url=server[0]).complete(ARITHMETIC, tools=TOOLS, tool_choice="required",
                                              max_tokens=48)
    assert remote == local, "the openai backend passes tools and tool_choice through"
    later = LLM("local").complete([*ARITHMETIC, local, {"role": "tool", "tool_call_id": "call_1",
                                                        "content": "391"}],
                                  tools=TOOLS, tool_choice="required", max_tokens=48)
    assert later["tool_calls"][0]["id"] == "call_2", "ids stay unique in a conversation"
    plain = LLM("local").complete(QUESTION, tools=TOOLS, tool_choice="none", max_tokens=8)
    assert plain == {"role": "assistant", "content": LLM("local").chat(QUESTION, max_tokens=8)}
