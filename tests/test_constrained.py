"""llmlab.constrained: the recognizer on hand-written texts and against `json.loads` and
`jsonschema`, the trie's mask against a brute-force scan of the vocabulary (a small made-up one
and SmolLM2's 49,152 tokens), and real constrained generations that must parse and validate."""

import json
import random
import types

import jsonschema
import pytest
import torch

from llmlab.chat import ChatModel, Finish
from llmlab.constrained import (
    MAX_NUMBER,
    TAG_CLOSE,
    TAG_OPEN,
    SchemaError,
    TokenTrie,
    advance,
    advance_text,
    brute_force_allowed,
    chosen_tools,
    completion,
    generate_constrained,
    generate_tool_reply,
    is_complete,
    start,
    token_strings,
    tool_call_grammar,
    trie_for,
)

SCHEMA = {
    "type": "object",
    "properties": {
        "expression": {"type": "string", "maxLength": 12},
        "k": {"type": "integer", "minimum": 1, "maximum": 10},
        "unit": {"type": "string", "enum": ["km", "mi"]},
        "x": {"type": "number", "minimum": -2.5, "maximum": 100},
        "flag": {"type": "boolean"},
        "xs": {"type": "array", "items": {"type": "integer"}, "maxItems": 3},
    },
    "required": ["expression"],
    "additionalProperties": False,
}


def _tool(name, properties, required, description=""):
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required}}}


TOOLS = [
    _tool("calculator", {"expression": {"type": "string"}}, ["expression"],
          "Evaluate an arithmetic expression."),
    _tool("convert_units", {"value": {"type": "number"},
                            "from_unit": {"type": "string", "enum": ["km", "mi", "kg", "lb"]},
                            "to_unit": {"type": "string", "enum": ["km", "mi", "kg", "lb"]}},
          ["value", "from_unit", "to_unit"], "Convert a value between units."),
    _tool("search_manual", {"query": {"type": "string"},
                            "k": {"type": "integer", "minimum": 1, "maximum": 5}},
          ["query"], "Search the Python reference manual."),
]


def accepts(text, schema=SCHEMA):
    state = advance_text(start(schema), text)
    return state is not None and is_complete(state)


# -- the recognizer on hand-written texts -------------------------------------------------------
@pytest.mark.parametrize("text", [
    '{"expression": "2+3"}',
    '{"expression":"a","k":10}',
    '{"expression": "a", "k": 1, "unit": "mi", "x": -2.5, "flag": false, "xs": []}',
    '{"expression": "a", "x": 100.0}',
    '{"expression": "a", "x": 0.25}',
    '{"expression": "a", "x": -0}',
    '{"expression": "a\\n\\"\\u00e9", "xs": [1, -2, 3]}',
    '{"expression": "été"}',
    '{"expression": ""}',
])
def test_recognizer_accepts_valid_texts(text):
    assert accepts(text)
    assert list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(json.loads(text))) == []


@pytest.mark.parametrize("text, why", [
    ('{}', "a required key is missing"),
    ('{"k": 1}', "a required key is missing"),
    ('{"expression": "a", "k": 11}', "above maximum"),
    ('{"expression": "a", "k": 0}', "below minimum"),
    ('{"expression": "a", "k": 2.5}', "an integer has no fraction"),
    ('{"expression": "a", "x": -2.51}', "below a fractional minimum"),
    ('{"expression": "a", "x": 100.01}', "above maximum"),
    ('{"expression": "a", "x": 05}', "a leading zero"),
    ('{"expression": "a", "x": 1e2}', "exponents are not part of the subset"),
    ('{"expression": "a", "unit": "m"}', "not in the enum"),
    ('{"expression": "a", "other": 1}', "an unknown key"),
    ('{"k": 1, "expression": "a"}', "keys come in the order of properties"),
    ('{"expression": "a", "xs": [1, 2, 3, 4]}', "more than maxItems"),
    ('{"expression": "a", "flag": True}', "not JSON"),
    ('{"expression": "abcdefghijklm"}', "longer than maxLength"),
    ('{"expression": "a\tb"}', "a raw control character"),
    ('{"expression": "\\q"}', "a bad escape"),
    ('{"expression":  "a"}', "two spaces"),
    ('{ "expression": "a"}', "a space after {"),
    ('{"expression": "a"', "not finished"),
    ('{"expression": "a"}}', "text after the value"),
])
def test_recognizer_rejects_invalid_texts(text, why):
    assert not accepts(text), why


def test_no_state_is_a_dead_end_and_every_complete_text_validates():
    """Random walks over characters: every state the recognizer returns can still be
    finished, and each finished text parses and validates with the reference."""
    alphabet = list('{}[]",: -.0123456789abcdefghijklmnopqrstuvwxyz\\') + ["é"]
    validator = jsonschema.Draft202012Validator(SCHEMA)
    rng = random.Random(0)
    finished = 0
    for _ in range(250):
        state, text = start(SCHEMA), ""
        for _ in range(60):
            options = [c for c in alphabet if advance(state, c) is not None]
            assert options or is_complete(state), f"dead end after {text!r}"
            ending = completion(state)
            assert is_complete(advance_text(state, ending)), f"{ending!r} finishes {text!r}"
            assert json.loads(text + ending) is not None
            if is_complete(state):
                assert list(validator.iter_errors(json.loads(text))) == [], text
                finished += 1
                if not options or rng.random() < 0.3:
                    break
            char = rng.choice(options)
            state, text = advance(state, char), text + char
    assert finished > 60


@pytest.mark.parametrize("schema, good, bad", [
    ({"type": "integer", "minimum": 0}, ["9" * MAX_NUMBER, "0", "-0"], ["9" * (MAX_NUMBER + 1),
                                                                      "-1", "01"]),
    ({"type": "number", "minimum": -3, "maximum": -3}, ["-3", "-3.0", "-3.000"],
     ["-30", "-3.01", "-2.9", "3"]),
    ({"type": "number", "minimum": 0.5, "maximum": 0.75}, ["0.5", "0.75", "0.6123"],
     ["0.76", "0.49", "1", "0"]),
    ({"type": "integer", "minimum": 20, "maximum": 20}, ["20"], ["2", "200", "20.0"]),
])
def test_bounded_numbers(schema, good, bad):
    for text in good:
        assert accepts(text, schema), text
    for text in bad:
        assert not accepts(text, schema), text
    minus = advance(start({"type": "integer", "minimum": 0}), "-")
    assert advance(minus, "1") is None, "after '-' only '0' stays >= 0"
    assert advance(start({"type": "integer", "minimum": 1}), "-") is None, "no negative start"
    assert advance_text(start({"type": "number", "minimum": 0.5, "maximum": 0.75}), "0.8") \
        is None, "a prefix that cannot come back into range is refused at once"


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"type": "string", "pattern": "x"}}},
    {"type": "object", "properties": {"a": {"anyOf": []}}},
    {"type": ["string", "null"]},
    {"type": "array"},
    {"type": "object", "properties": {}, "required": ["a"]},
    {"type": "integer", "minimum": 3, "maximum": 2},
    {"type": "string", "minLength": 500},
])
def test_unsupported_or_impossible_schemas_are_refused(schema):
    with pytest.raises(SchemaError):
        start(schema)


def test_tool_call_grammar():
    grammar = tool_call_grammar(TOOLS)
    call = '{"name": "search_manual", "arguments": {"query": "with statement", "k": 2}}'
    state = advance_text(grammar.start(), call + TAG_CLOSE)
    assert state == () and is_complete(state), "the call and the closing tag finish it"
    assert advance_text(grammar.start(), call) is not None and not is_complete(
        advance_text(grammar.start(), call)), "the closing tag is part of the grammar"
    wrong = '{"name": "calculator", "arguments": {"query": "with"}}'
    assert advance_text(grammar.start(), wrong) is None, "arguments follow the chosen tool"
    assert advance_text(grammar.start(), '{"name": "eval"') is None, "only offered names"
    named = tool_call_grammar(TOOLS, {"type": "function", "function": {"name": "calculator"}})
    assert advance_text(named.start(), call) is None, "a named choice allows that tool only"
    assert advance_text(named.start(), '{"name":"calculator","arguments":{"expression":"1"}}'
                        + TAG_CLOSE) == ()
    with pytest.raises(ValueError, match="unknown tool 'nope'"):
        tool_call_grammar(TOOLS, {"type": "function", "function": {"name": "nope"}})
    with pytest.raises(ValueError, match="none"):
        tool_call_grammar(TOOLS, "none")
    assert chosen_tools(TOOLS, "none") == []
    with pytest.raises(ValueError, match="tool_choice"):
        chosen_tools(TOOLS, "sometimes")


# -- the trie against brute force ---------------------------------------------------------------
SMALL_VOCAB = ['{', '}', '"', '":', ' "', '{"', 'expression', 'exp', 'k', '1', '10', '2', '.',
               '5', ',', ', "', 'a', 'ab', '"}', 'true', '", "', '-', ' ', '[', ']', 'km', 'x',
               'xs', '"xs":', '\\', 'u', '0', '00e9', 'é', 'abcdefghijk', '\n', None, '',
               '":"', '"},', 'ex', 'pression', '":-', '2.5', '100', '}}']


def _walk_states(grammar_start, vocab, trie, rng, walks, steps):
    """States reached by sampling allowed tokens (and checking each mask on the way)."""
    seen = 0
    for _ in range(walks):
        state, text = grammar_start(), ""
        for _ in range(steps):
            mask = trie.allowed(state)
            assert mask == brute_force_allowed(state, vocab), f"mask differs after {text!r}"
            seen += 1
            if not mask or not state:
                break
            token = rng.choice(mask)
            state, text = advance_text(state, vocab[token]), text + vocab[token]
    return seen


def test_trie_mask_equals_brute_force_on_a_small_vocabulary():
    trie = TokenTrie(SMALL_VOCAB)
    rng = random.Random(1)
    assert _walk_states(lambda: start(SCHEMA), SMALL_VOCAB, trie, rng, 300, 40) > 1500
    grammar = tool_call_grammar(TOOLS)
    tool_vocab = SMALL_VOCAB + ['name', 'arguments', 'calculator', 'search', '_manual', '"query',
                                'convert_units', 'mi', '</', 'tool', '_call', '>', 'query']
    trie = TokenTrie(tool_vocab)
    assert _walk_states(grammar.start, tool_vocab, trie, rng, 200, 60) > 1000
    assert trie.hits > 0, "states repeat, and the memo answers them"


@pytest.fixture(scope="module")
def chat() -> ChatModel:
    return ChatModel.load()


@pytest.fixture(scope="module")
def vocab(chat):
    return token_strings(chat.tokenizer)


def test_token_strings_leave_out_partial_characters_and_specials(chat, vocab):
    assert len(vocab) == chat.tokenizer.n_vocab == 49152
    for i, text in enumerate(vocab):
        raw = chat.tokenizer.decode_bytes([i])
        if text is None:
            assert i in chat.tokenizer.special_tokens.values() or not _utf8(raw)
        else:
            assert raw == text.encode("utf-8")
    assert 200 < sum(t is None for t in vocab) < 1000


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_trie_mask_equals_brute_force_on_the_real_vocabulary(chat, vocab):
    """A sample of states along a real call: right after `{`, inside a key, inside a string,
    in a bounded integer, an enum, after the last brace."""
    trie = trie_for(chat.tokenizer)
    grammar = tool_call_grammar(TOOLS)
    call = ('{"name": "search_manual", "arguments": {"query": "with statement", "k": 2}}'
            + TAG_CLOSE)
    cuts = [0, len('{"na'), len('{"name": "search_manual", "arguments": {"query": "wi'),
            len('{"name": "search_manual", "arguments": {"query": "with statement", "k": '),
            len(call) - len(TAG_CLOSE) - 1]
    for cut in cuts:
        state = advance_text(grammar.start(), call[:cut])
        assert trie.allowed(state) == brute_force_allowed(state, vocab), call[:cut]
    enum = advance_text(tool_call_grammar(TOOLS).start(),
                        '{"name": "convert_units", "arguments": {"value": 3, "from_unit": "')
    mask = trie.allowed(enum)
    assert mask == brute_force_allowed(enum, vocab)
    assert {vocab[i] for i in mask} >= {"k", "m", "l"} and "x" not in {vocab[i] for i in mask}


# -- real constrained generations ---------------------------------------------------------------
PROMPTS = [
    ("What is 17 times 23?", "calculator"),
    ("How many miles is 42 km?", "convert_units"),
    ("Find the part of the Python manual about the with statement.", "search_manual"),
]


def _prompt(chat, question):
    lines = [json.dumps(t["function"]) for t in TOOLS]
    system = ("You can call these tools:\n" + "\n".join(lines) + "\nTo call a tool, reply "
              'with only: <tool_call>{"name": "NAME", "arguments": {...}}</tool_call>')
    return chat.prompt_ids([{"role": "system", "content": system},
                            {"role": "user", "content": question}])


def _check_call(text, names=None):
    assert text.startswith(TAG_OPEN) and text.endswith(TAG_CLOSE), text
    call = json.loads(text[len(TAG_OPEN): -len(TAG_CLOSE)])
    assert set(call) == {"name", "arguments"}
    tool = next(t["function"] for t in TOOLS if t["function"]["name"] == call["name"])
    assert names is None or call["name"] in names
    jsonschema.validate(call["arguments"], tool["parameters"])
    return call


@pytest.mark.parametrize("question, tool, temperature, seed", [
    (PROMPTS[0][0], "required", 0.0, None),
    (PROMPTS[1][0], "required", 1.0, 0),
    (PROMPTS[2][0], "required", 0.8, 1),
    (PROMPTS[0][0], "calculator", 1.0, 2),
    (PROMPTS[1][0], "convert_units", 0.0, None),
    (PROMPTS[2][0], "search_manual", 1.2, 3),
])
def test_real_calls_parse_and_validate(chat, question, tool, temperature, seed):
    """Required or named calls from the real model, greedy and sampled: always valid."""
    choice = tool if tool == "required" else {"type": "function", "function": {"name": tool}}
    finish = Finish()
    text = generate_tool_reply(chat, _prompt(chat, question), TOOLS, choice, max_new_tokens=48,
                               temperature=temperature, seed=seed, finish=finish)
    call = _check_call(text)
    assert tool == "required" or call["name"] == tool
    assert finish.reason == "stop" and finish.completion_tokens <= 48


def test_generate_constrained_with_a_plain_schema(chat):
    ids = chat.prompt_ids([{"role": "user", "content": "Give a JSON object with a city name "
                            "and its population."}])
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                               "population": {"type": "integer",
                                                              "minimum": 0}},
              "required": ["city", "population"]}
    text = generate_constrained(chat, ids, schema, max_new_tokens=30, temperature=1.0, seed=0)
    jsonschema.validate(json.loads(text), schema)


class Scripted:
    """A stand-in for ChatModel that always wants the next token of a script (then the end of
    turn): what the grammar does to a model that would write a broken call."""

    def __init__(self, tokenizer, script_ids):
        self.tokenizer, self.script = tokenizer, list(script_ids)
        self.end_ids, self.context_length, self.model = {2}, 2048, self

    def prefill(self, ids, room=0):
        self.prompt = len(ids)
        cache = types.SimpleNamespace(length=len(ids), max_len=len(ids) + room)
        return cache, self._logits(cache)

    def __call__(self, tokens, cache, position, last_only=False):
        cache.length += tokens.shape[1]
        return self._logits(cache)[None, None]

    def _logits(self, cache):
        made = cache.length - self.prompt
        logits = torch.zeros(self.tokenizer.n_vocab)
        logits[self.script[made] if made < len(self.script) else 2] = 10.0
        return logits


@pytest.mark.parametrize("script", [
    'Sure. <tool_call>{"name": "calculator", "arguments": {"expression": 17*23}}</tool_call>',
    'Let me see. <tool_call>{"name": "calc", "args": {"x": 1}} and more text',
    '<tool_call>{"name": "search_manual", "arguments": {"query": "with", "k": 12}}</tool_call>',
])
def test_auto_mode_keeps_a_started_call_valid(chat, script):
    model = Scripted(chat.tokenizer, chat.tokenizer.encode_ordinary(script))
    text = generate_tool_reply(model, [1, 2, 3], TOOLS, "auto", max_new_tokens=80)
    head = script[: script.index(TAG_OPEN)]
    assert text.startswith(head + TAG_OPEN), "free text up to the tag is the model's own"
    _check_call(text[len(head):])


def test_auto_mode_when_a_token_runs_past_the_tag(chat, vocab):
    """A token holding the tag's last character and more (here `>>`) is replaced by the tag's
    own characters; the call after it is still valid."""
    tokenizer = chat.tokenizer
    runs_on = vocab.index(">>")
    script = tokenizer.encode_ordinary("Call: <tool_call") + [runs_on] + tokenizer.encode_ordinary(
        '"name": "calculator"}')
    text = generate_tool_reply(Scripted(tokenizer, script), [1, 2, 3], TOOLS, "auto",
                               max_new_tokens=80)
    assert text.startswith("Call: " + TAG_OPEN + "{")
    _check_call(text[len("Call: "):])


def test_free_text_without_a_tag_and_tool_choice_none(chat):
    model = Scripted(chat.tokenizer, chat.tokenizer.encode_ordinary("It is 391."))
    assert generate_tool_reply(model, [1], TOOLS, "auto", max_new_tokens=20) == "It is 391."
    model = Scripted(chat.tokenizer, chat.tokenizer.encode_ordinary(
        '<tool_call>{"name": "eval"}</tool_call>'))
    assert generate_tool_reply(model, [1], TOOLS, "none", max_new_tokens=40) == \
        '<tool_call>{"name": "eval"}</tool_call>', "'none': no grammar at all"
    model = Scripted(chat.tokenizer, chat.tokenizer.encode_ordinary("No call here."))
    _check_call(generate_tool_reply(model, [1], TOOLS, "required", max_new_tokens=60))


def test_a_call_closes_before_max_new_tokens(chat):
    """A model that would write a long string is made to close the call in time."""
    script = chat.tokenizer.encode_ordinary(
        '{"name": "calculator", "arguments": {"expression": "' + "1 + " * 60)
    model = Scripted(chat.tokenizer, script)
    finish = Finish()
    text = generate_tool_reply(model, [1], TOOLS, "required", max_new_tokens=40, finish=finish)
    _check_call(text)
    assert finish.completion_tokens <= 40 and "1 + 1 + 1 + 1 + 1" in text
