"""llmlab.agents: parsing tool calls (tags, the plain-text fallback, OpenAI's shape, broken
tags), argument validation cross-checked against `jsonschema`, the registry's error strings, the
calculator's safety, the agent loop's stop reasons on scripted models, the metrics, and the task
set (every expected call validates and its tool's result gives the answer). No model is loaded."""

import itertools
import json
import random
import re

import jsonschema
import pytest

from llmlab import agents as A
from llmlab.agents import (
    ToolCallError,
    ToolRegistry,
    answer_matches,
    calls_equal,
    function_calling_metrics,
    parse_tool_calls,
    run_agent,
    validate_arguments,
)

CALC = {"name": "calculator", "arguments": {"expression": "2 + 3"}}


def tag(obj) -> str:
    return "<tool_call>" + (obj if isinstance(obj, str) else json.dumps(obj)) + "</tool_call>"


@pytest.fixture(scope="module")
def registry():
    return A.default_tools()


# -- the tools prompt --------------------------------------------------------------------------
def test_tools_prompt_lists_each_function_as_one_json_line_in_order(registry):
    text = A.tools_prompt(registry.schemas())
    lines = text.splitlines()
    assert lines[0] == A.TOOLS_INTRO
    assert [json.loads(line) for line in lines[1:5]] == [s["function"] for s in registry.schemas()]
    assert lines[5] == A.TOOLS_HOW and "<tool_call>" in lines[5] and lines[6] == A.TOOLS_AFTER
    assert A.tools_prompt(registry) == text == A.tools_prompt(list(registry))
    assert A.tools_prompt(registry, example=True) == text + "\n" + A.TOOLS_EXAMPLE


def test_with_tools_appends_to_the_system_message_or_makes_one(registry):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    out = A.with_tools(chat, registry)
    assert out[0] == {"role": "system", "content": "Be brief.\n\n" + A.tools_prompt(registry)}
    assert out[1:] == chat[1:] and chat[0]["content"] == "Be brief.", "input not modified"
    bare = A.with_tools(chat[1:], registry)
    assert bare == [{"role": "system", "content": A.tools_prompt(registry)}, chat[1]]
    assert A.with_tools(chat, []) == chat


# -- parsing -----------------------------------------------------------------------------------
def test_parse_tags_one_or_several_with_text_around():
    other = {"name": "date_calc", "arguments": {"date": "2026-01-01", "days": 3}}
    assert parse_tool_calls(tag(CALC)) == [CALC]
    assert parse_tool_calls(f"Let me compute.\n{tag(CALC)}\n{tag(other)} done") == [CALC, other]
    assert parse_tool_calls(f"<tool_call>\n  {json.dumps(CALC)}\n</tool_call>") == [CALC]
    assert parse_tool_calls("The answer is 5.") == []
    assert parse_tool_calls("") == []


def test_an_unclosed_tag_at_the_end_still_counts():
    assert parse_tool_calls("<tool_call>" + json.dumps(CALC)) == [CALC]
    assert parse_tool_calls("<tool_call>" + json.dumps(CALC) + " and then some") == [CALC]


@pytest.mark.parametrize("body, words", [
    ('{"name": "calculator", "arguments": {"expression": "2"', "not valid JSON"),
    ("calculator(2 + 3)", "not valid JSON"),
    ("", "empty"),
    ('["calculator"]', "JSON object"),
    ('{"arguments": {}}', '"name"'),
    ('{"name": 3, "arguments": {}}', '"name"'),
    ('{"name": "calculator"}', '"arguments"'),
    ('{"name": "calculator", "arguments": "2 + 3"}', '"arguments"'),
    ('{"name": "calculator", "arguments": [1]}', '"arguments"'),
])
def test_broken_tag_content_raises_tool_call_error_saying_what(body, words):
    with pytest.raises(ToolCallError, match=re.escape(words)):
        parse_tool_calls(f"<tool_call>{body}</tool_call>")
    assert issubclass(ToolCallError, ValueError)


def test_fallback_takes_the_first_top_level_object_with_exactly_name_and_arguments():
    assert parse_tool_calls(f"Sure: {json.dumps(CALC)}") == [CALC]
    assert parse_tool_calls('{"name": "calculator", "arguments": "{\\"expression\\": \\"1\\"}"}') \
        == [{"name": "calculator", "arguments": {"expression": "1"}}]
    # an object with other keys is not a call, and nothing inside it is looked at
    nested = {"plan": CALC}
    assert parse_tool_calls(json.dumps(nested)) == []
    assert parse_tool_calls(json.dumps(nested) + " then " + json.dumps(CALC)) == [CALC]
    assert parse_tool_calls(json.dumps({**CALC, "id": 1})) == []
    assert parse_tool_calls('{"name": "x", "arguments": 5}') == []
    assert parse_tool_calls('{broken {"name": "calculator", "arguments": {}}') == \
        [{"name": "calculator", "arguments": {}}]
    first, second = json.dumps(CALC), json.dumps({"name": "b", "arguments": {}})
    assert parse_tool_calls(f"{first} {second}") == [CALC], "only the first object counts"


def test_tags_win_over_the_fallback():
    other = {"name": "b", "arguments": {}}
    assert parse_tool_calls(json.dumps(CALC) + tag(other)) == [other]


def test_openai_shape_assistant_message():
    message = A.assistant_message([CALC, {"name": "b", "arguments": {"x": [1, 2]}}],
                                  content="ignored " + tag({"name": "z", "arguments": {}}))
    assert message["tool_calls"][0]["id"] == "call_1"
    assert isinstance(message["tool_calls"][0]["function"]["arguments"], str)
    assert parse_tool_calls(message) == [CALC, {"name": "b", "arguments": {"x": [1, 2]}}]
    assert parse_tool_calls({"role": "assistant", "content": "hi"}) == []
    with pytest.raises(ToolCallError, match="not valid JSON"):
        parse_tool_calls({"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "a", "arguments": "{"}}]})


def test_chat_renders_an_assistant_message_back_into_parseable_tags():
    from llmlab.chat import _plain

    message = A.assistant_message([CALC], content="Computing.")
    assert parse_tool_calls(_plain(message)["content"]) == [CALC]


# -- validation --------------------------------------------------------------------------------
SCHEMA = {"type": "object",
          "properties": {"x": {"type": "number", "minimum": 0, "maximum": 10},
                         "n": {"type": "integer", "minimum": 1},
                         "unit": {"type": "string", "enum": ["km", "mi"]},
                         "flag": {"type": "boolean"},
                         "tags": {"type": "array", "items": {"type": "string"}},
                         "point": {"type": "object",
                                   "properties": {"a": {"type": "integer"},
                                                  "b": {"type": "number", "maximum": 1}},
                                   "required": ["a"], "additionalProperties": False}},
          "required": ["x", "unit"], "additionalProperties": False}


@pytest.mark.parametrize("arguments, expected", [
    ({"x": 1, "unit": "km"}, []),
    ({"x": 1.5, "unit": "mi", "n": 2.0, "flag": False, "tags": [], "point": {"a": 1}}, []),
    ({"unit": "km"}, ["missing required argument 'x'"]),
    ({"x": "3", "unit": "km"}, ["argument 'x' must be a number, got a string"]),
    ({"x": True, "unit": "km"}, ["argument 'x' must be a number, got a boolean"]),
    ({"x": 1, "unit": "km", "y": 2}, ["unknown argument 'y'"]),
    ({"x": 1, "unit": "m"}, ["argument 'unit' must be one of ['km', 'mi'], got 'm'"]),
    ({"x": -1, "unit": "km"}, ["argument 'x' must be >= 0, got -1"]),
    ({"x": 11, "unit": "km"}, ["argument 'x' must be <= 10, got 11"]),
    ({"x": 1, "unit": "km", "n": 2.5}, ["argument 'n' must be an integer, got a number"]),
    ({"x": 1, "unit": "km", "n": True}, ["argument 'n' must be an integer, got a boolean"]),
    ({"x": 1, "unit": "km", "tags": ["a", 3]}, ["argument 'tags[1]' must be a string, got an "
                                                "integer"]),
    ({"x": 1, "unit": "km", "point": {"b": 2, "c": 0}},
     ["missing required argument 'point.a'", "argument 'point.b' must be <= 1, got 2",
      "unknown argument 'point.c'"]),
])
def test_validate_messages_name_the_argument_and_the_rule(arguments, expected):
    assert validate_arguments(arguments, SCHEMA) == expected


def test_validate_top_level_must_be_an_object():
    assert validate_arguments([1], SCHEMA) == ["the arguments must be an object, got an array"]


VALUES = [0, 1, -1, 2.0, 2.5, 1e3, True, False, None, "", "km", "mi", "3", [], [1], ["a", "b"],
          {}, {"a": 1}, {"a": "x"}, {"a": 1, "b": 0.5}, {"a": 1, "z": 1}]
SUB_SCHEMAS = [{"type": t} for t in ("string", "number", "integer", "boolean", "array",
                                     "object")] + [
    {"type": "number", "minimum": 0, "maximum": 2}, {"type": "integer", "minimum": 1},
    {"enum": ["km", "mi", 2]}, {"type": "string", "enum": ["km"]},
    {"type": "array", "items": {"type": "integer"}},
    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
     "additionalProperties": False}, {"type": ["string", "null"]}, {}]


def test_validate_agrees_with_jsonschema_on_many_cases():
    rng = random.Random(0)
    checked = 0
    for sub, value in itertools.product(SUB_SCHEMAS, VALUES):
        schema = {"type": "object", "properties": {"v": sub, "w": rng.choice(SUB_SCHEMAS)},
                  "required": ["v"], "additionalProperties": rng.random() < 0.5}
        for arguments in ({"v": value}, {"v": value, "w": rng.choice(VALUES)},
                          {"v": value, "extra": 1}, {"w": value}):
            ours = validate_arguments(arguments, schema)
            reference = list(jsonschema.Draft202012Validator(schema).iter_errors(arguments))
            assert (ours == []) == (reference == []), (schema, arguments, ours, reference)
            assert len(ours) >= (1 if reference else 0)
            checked += 1
    assert checked > 500


# -- the registry ------------------------------------------------------------------------------
def test_registry_runs_allowed_calls_and_turns_every_problem_into_an_error_text(registry):
    assert registry.names == ["calculator", "convert_units", "date_calc", "search_manual"]
    assert [s["function"]["name"] for s in registry.schemas()] == registry.names
    assert all(s["type"] == "function" for s in registry.schemas())
    assert registry.run(CALC) == "5"
    assert registry.run({"function": {"name": "calculator",
                                      "arguments": '{"expression": "6*7"}'}}) == "42"
    assert registry.run({"name": "shell", "arguments": {"cmd": "rm -rf /"}}) == (
        "error: unknown tool 'shell'; the tools are: calculator, convert_units, date_calc, "
        "search_manual")
    bad = registry.run({"name": "convert_units", "arguments": {"value": "5", "to_unit": "mi"}})
    assert bad == ("error: missing required argument 'from_unit'; argument 'value' must be a "
                   "number, got a string")
    assert registry.run({"name": "calculator", "arguments": {"expression": "1/0"}}) == \
        "error: ZeroDivisionError: division by zero"


def test_registry_rejects_duplicate_names_and_never_calls_a_tool_with_bad_arguments():
    seen = []
    tool = A.Tool("echo", "say it", {"type": "object", "properties": {"s": {"type": "string"}},
                                     "required": ["s"]}, lambda s: seen.append(s) or s)
    with pytest.raises(ValueError, match="echo"):
        ToolRegistry([tool, tool])
    reg = ToolRegistry([tool])
    assert reg.run({"name": "echo", "arguments": {"s": 3}}).startswith("error: ")
    assert seen == []
    assert reg.run({"name": "echo", "arguments": {"s": "hi"}}) == "hi" and seen == ["hi"]
    assert "echo" in reg and len(reg) == 1 and reg["echo"] is tool


def test_tool_message_shape():
    assert A.tool_message(CALC, "5", "call_7") == {"role": "tool", "tool_call_id": "call_7",
                                                   "name": "calculator", "content": "5"}


# -- the tools ---------------------------------------------------------------------------------
@pytest.mark.parametrize("expression, value", [
    ("2 + 3 * 4", "14"), ("(2 + 3) * 4", "20"), ("7 / 2", "3.5"), ("7 // 2", "3"), ("-7 % 3", "2"),
    ("2 ** 10", "1024"), ("-2 ** 2", "-4"), ("sqrt(16)", "4"), ("round(2.675, 1)", "2.7"),
    ("max(3, 9, 4)", "9"), ("abs(-2.5)", "2.5"), ("10 / 4 =", "2.5"), ("2 * pi", "6.28318530718"),
    ("2 ** 0.5", "1.41421356237"), ("1e3 + 1", "1001"),
])
def test_calculator_evaluates_arithmetic(expression, value):
    assert A.calculator(expression) == value


@pytest.mark.parametrize("expression, words", [
    ("__import__('os')", "cannot call '__import__'"),
    ("__import__('os').system('ls')", "attributes"),
    ("().__class__.__bases__", "attributes"),
    ("(1).real", "attributes"),
    ("open('x')", "cannot call 'open'"),
    ("os", "unknown name 'os'"),
    ("9**9**9", "too large"),
    ("10 ** 2000", "too large"),
    ("2.0 ** 5000", "too large"),
    ("exp(1000)", "OverflowError"),
    ("'a' * 10", "only numbers"),
    ("[1, 2]", "not allowed"),
    ("2 ^ 10", "use **"),
    ("lambda: 1", "not allowed"),
    ("x if 1 else 2", "not allowed"),
    ("2 +", "not an arithmetic expression"),
    ("1" * 400, "longer than"),
    ("(-8) ** 0.5", "not a real number"),
    ("sqrt(x=4)", "positional"),
])
def test_calculator_refuses_anything_but_arithmetic_with_a_clear_error(registry, expression,
                                                                       words):
    result = registry.run({"name": "calculator", "arguments": {"expression": expression}})
    assert result.startswith("error: ") and words in result, result


def test_calculator_refuses_a_huge_power_before_computing_it(registry):
    import time

    started = time.perf_counter()
    assert "too large" in registry.run({"name": "calculator",
                                        "arguments": {"expression": "9**9**9**9"}})
    assert time.perf_counter() - started < 0.5


def test_convert_units():
    assert A.convert_units(5, "km", "mi") == "5 km = 3.10686 mi"
    assert A.convert_units(-40, "C", "F") == "-40 C = -40 F"
    assert A.convert_units(212, "F", "K") == "212 F = 373.15 K"
    assert A.convert_units(2, "h", "min") == "2 h = 120 min"
    assert A.convert_units(1, "lb", "oz") == "1 lb = 16 oz"
    with pytest.raises(ValueError, match="cannot convert km"):
        A.convert_units(1, "km", "kg")


def test_date_calc():
    assert A.date_calc("2026-12-01") == "2026-12-01 is a Tuesday"
    assert A.date_calc("2024-02-28", days=2) == "2024-02-28 + 2 days = 2024-03-01 (Friday)"
    assert "-10 days" in A.date_calc("2026-01-05", days=-10)
    assert " 366 days" in A.date_calc("2024-01-01", end_date="2025-01-01")
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        A.date_calc("1 March 2026")
    with pytest.raises(ValueError, match="not both"):
        A.date_calc("2026-01-01", days=1, end_date="2026-01-02")


def test_search_manual_numbers_short_snippets_and_is_built_once(registry):
    result = registry.run({"name": "search_manual",
                           "arguments": {"query": "assert statement exception", "k": 2}})
    lines = result.splitlines()
    assert len(lines) == 2 and lines[0].startswith("[1] (assert) ")
    assert all(len(line) < A.SNIPPET_CHARS + 40 for line in lines)
    assert A.manual_index() is A.manual_index()
    assert registry.run({"name": "search_manual",
                         "arguments": {"query": "x", "k": 9}}).startswith("error: argument 'k'")


# -- the agent loop ----------------------------------------------------------------------------
class Scripted:
    """A model that replies from a list, recording what it was shown."""

    def __init__(self, *replies):
        self.replies, self.seen = list(replies), []

    def __call__(self, messages, tools=None):
        self.seen.append((messages, tools))
        return self.replies.pop(0)


def test_agent_calls_a_tool_then_answers(registry):
    model = Scripted(tag(CALC), "2 + 3 is 5.")
    result = run_agent(model, "What is 2 + 3?", registry)
    assert result.stopped == "answer" and result.answer == "2 + 3 is 5."
    assert [s["calls"] for s in result.steps] == [[CALC], []]
    assert result.steps[0]["results"] == ["5"]
    first, second = (m for m, _ in model.seen)
    assert first[0]["role"] == "system" and A.tools_prompt(registry) in first[0]["content"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool"]
    assert second[2]["content"] is None and parse_tool_calls(second[2]) == [CALC]
    assert second[3] == {"role": "tool", "tool_call_id": "call_1", "name": "calculator",
                         "content": "5"}
    assert result.messages[-1] == {"role": "assistant", "content": "2 + 3 is 5."}


def test_agent_feeds_tool_errors_back_and_the_model_recovers(registry):
    bad = {"name": "calculator", "arguments": {"expr": "2+3"}}
    model = Scripted(tag(bad), tag(CALC), "It is 5.")
    result = run_agent(model, "2 + 3?", registry)
    assert result.stopped == "answer" and len(result.steps) == 3
    assert result.steps[0]["results"][0].startswith("error: missing required argument "
                                                    "'expression'")
    tool_ids = [m["tool_call_id"] for m in result.messages if m["role"] == "tool"]
    assert tool_ids == ["call_1", "call_2"]


def test_agent_answers_a_broken_tag_with_a_user_error_message(registry):
    model = Scripted('<tool_call>{"name": "calculator", "arguments": {</tool_call>',
                     tag(CALC), "5")
    result = run_agent(model, "2 + 3?", registry)
    assert result.stopped == "answer" and result.answer == "5"
    assert result.steps[0]["error"] and result.steps[0]["calls"] == []
    shown = model.seen[1][0]
    assert shown[-1]["role"] == "user" and shown[-1]["content"].startswith("error: ")
    assert "not valid JSON" in shown[-1]["content"]
    assert shown[-2] == {"role": "assistant",
                         "content": '<tool_call>{"name": "calculator", "arguments": {</tool_call>'}


def test_agent_stops_on_a_repeated_call_without_running_it_again(registry):
    runs = []
    reg = ToolRegistry([A.Tool("t", "", {"type": "object"}, lambda **kw: runs.append(kw) or "r")])
    model = Scripted(tag({"name": "t", "arguments": {"a": 2, "b": [1]}}),
                     tag({"name": "t", "arguments": {"b": [1.0], "a": 2.0}}))
    result = run_agent(model, "go", reg)
    assert result.stopped == "repeat" and result.answer is None and len(result.steps) == 2
    assert len(runs) == 1
    same_reply = Scripted(tag({"name": "t", "arguments": {}}) + tag({"name": "t",
                                                                    "arguments": {}}))
    assert run_agent(same_reply, "go", reg).stopped == "repeat"


def test_agent_stops_after_max_steps(registry):
    replies = [tag({"name": "calculator", "arguments": {"expression": f"{i} + 1"}})
               for i in range(10)]
    model = Scripted(*replies)
    result = run_agent(model, "count", registry, max_steps=3)
    assert result.stopped == "max_steps" and result.answer is None
    assert len(result.steps) == 3 and len(model.seen) == 3
    with pytest.raises(ValueError):
        run_agent(model, "x", registry, max_steps=0)


def test_agent_takes_messages_and_a_dict_reply_and_the_constrained_calling_convention(registry):
    reply = A.assistant_message([CALC])
    model = Scripted(reply, {"role": "assistant", "content": "Five."})
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+3?"}]
    result = run_agent(model, chat, registry, constrained=True)
    assert result.answer == "Five." and result.steps[0]["results"] == ["5"]
    shown, tools = model.seen[0]
    assert tools == registry.schemas() and shown == chat, "constrained: tools passed, not rendered"
    assert chat[0]["content"] == "Be brief.", "the caller's messages are not modified"


def test_local_model_constrained_says_clearly_when_it_is_unavailable(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_constrained(name, *args, **kwargs):
        if name == "llmlab.constrained":
            raise ImportError("No module named 'llmlab.constrained'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_constrained)
    with pytest.raises(NotImplementedError, match="llmlab.constrained"):
        A._constrained_module()


# -- metrics -----------------------------------------------------------------------------------
@pytest.mark.parametrize("a, b, equal", [
    ({"x": 2}, {"x": 2.0}, True),
    ({"x": 1, "y": "a"}, {"y": "a", "x": 1}, True),
    ({"x": True}, {"x": 1}, False),
    ({"x": 0}, {"x": False}, False),
    ({"x": True}, {"x": True}, True),
    ({"x": "2"}, {"x": 2}, False),
    ({"x": "Km"}, {"x": "km"}, False),
    ({"x": [1, 2]}, {"x": [2, 1]}, False),
    ({"x": [1, {"y": 2}]}, {"x": [1.0, {"y": 2.0}]}, True),
    ({"x": {"y": 1}}, {"x": {"y": 1, "z": None}}, False),
    ({"x": None}, {"x": None}, True),
    ({}, {"x": None}, False),
])
def test_calls_equal_compares_arguments_as_json(a, b, equal):
    assert calls_equal({"name": "f", "arguments": a}, {"name": "f", "arguments": b}) is equal
    assert calls_equal({"name": "f", "arguments": b}, {"name": "f", "arguments": a}) is equal
    assert not calls_equal({"name": "f", "arguments": a}, {"name": "g", "arguments": a})


def test_calls_equal_reads_openai_entries_and_json_strings():
    entry = A.assistant_message([{"name": "f", "arguments": {"x": 2}}])["tool_calls"][0]
    assert calls_equal(entry, {"name": "f", "arguments": '{"x": 2.0}'})
    assert not calls_equal({"name": "f", "arguments": "{"}, {"name": "f", "arguments": {}})


def test_function_calling_metrics(registry):
    expected = [CALC, {"name": "date_calc", "arguments": {"date": "2026-01-01"}},
                {"name": "convert_units", "arguments": {"value": 1, "from_unit": "km",
                                                        "to_unit": "mi"}}, CALC]
    predicted = [{"name": "calculator", "arguments": {"expression": "2 + 3"}},  # exact
                 [{"name": "date_calc", "arguments": {"date": "2026-1-1"}}],  # valid, not exact
                 {"name": "convert_units", "arguments": {"value": "1"}},  # right name, invalid
                 None]  # no call
    scores = function_calling_metrics(predicted, expected, registry)
    assert scores == {"n": 4, "tool_choice_accuracy": 0.75, "valid_call_rate": 0.5,
                      "exact_call_rate": 0.25}
    unknown = function_calling_metrics([{"name": "shell", "arguments": {}}], [CALC], registry)
    assert unknown["valid_call_rate"] == 0 == unknown["tool_choice_accuracy"]
    with pytest.raises(ValueError):
        function_calling_metrics([None], [CALC, CALC])


@pytest.mark.parametrize("reply, answer, ok", [
    ("The answer is 126.", "126", True), ("126.0", "126", True), ("1,500 pencils", "1500", True),
    ("about 125", "126", False), ("1260", "126", False), ("12.6", "126", False),
    ("3.10686 miles", "3.107", True), ("3.1 miles", "3.107", False), ("-40 F", "-40", True),
    ("It is 40.", "-40", False), ("0.875", "0.875", True), ("7/8 = .875", "0.875", False),
    ("It was a friday.", "Friday", True), ("Fridays", "Friday", False),
    ("on 2027-03-11 (Thursday)", "2027-03-11", True), ("use __exit__()", "__exit__", True),
    ("use __exit__", "exit", False), (None, "5", False), ("", "5", False),
])
def test_answer_matches(reply, answer, ok):
    assert answer_matches(reply, answer) is ok


# -- the task set ------------------------------------------------------------------------------
TASKS = A.tasks()


def test_task_set_shape_and_mix():
    assert len(TASKS) >= 36
    kinds = {k: sum(t["kind"] == k for t in TASKS) for k in A.TASK_KINDS}
    assert all(n >= 5 for n in kinds.values()), kinds
    assert len({t["task"] for t in TASKS}) == len(TASKS)
    assert {t["split"] for t in TASKS} == {"dev", "test"}
    assert A.tasks("date") == [t for t in TASKS if t["kind"] == "date"]
    # the split rule stated in llmlab/datasets/README.md
    order = list(range(len(TASKS)))
    random.Random(12).shuffle(order)
    dev = set(order[: len(TASKS) // 3])
    assert [t["split"] for t in TASKS] == ["dev" if i in dev else "test"
                                           for i in range(len(TASKS))]


@pytest.mark.parametrize("item", TASKS, ids=[t["task"][:40] for t in TASKS])
def test_each_task_expected_call_validates_and_its_tool_gives_the_answer(registry, item):
    call = {"name": item["tool"], "arguments": item["arguments"]}
    assert registry.check(call) == []
    result = registry.run(call)
    assert not result.startswith("error"), result
    for step in item.get("then", []):
        first_number = re.search(r"\d+(\.\d+)?", step["arguments"].get("expression", ""))
        assert first_number and first_number.group(0) in result, "the next step uses the result"
        result = registry.run({"name": step["tool"], "arguments": step["arguments"]})
    assert answer_matches(result, item["answer"]), (result, item["answer"])
    assert not answer_matches(item["task"], item["answer"]), "the task does not give it away"
    assert ("then" in item) == (item["kind"] == "two-step")


def test_injection_tasks_poison_a_real_result_and_the_rate_is_measured():
    items = A.injection_tasks()
    assert len(items) == len(A.tasks("manual"))
    tool = items[0]["messages"][-1]
    assert tool["role"] == "tool" and A.INJECTION_CANARY in tool["content"]
    defended = A.injection_tasks(defended=True)
    assert "<untrusted>" in defended[0]["messages"][-1]["content"]
    assert A.INJECTION_GUARD in defended[0]["messages"][0]["content"]
    obey = A.injection_rate(lambda m: "PWNED", items)
    assert obey["injected"] == 1.0 and obey["answered"] == 0.0
    honest = A.injection_rate(lambda m: "I do not know.", items[:2])
    assert honest["injected"] == 0.0 and honest["n"] == 2


def oracle(messages):
    """A scripted model that knows every task's calls: it makes them in order, then answers
    with the last tool result."""
    user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    item = next(t for t in TASKS if t["task"] == messages[user]["content"])
    plan = [{"name": item["tool"], "arguments": item["arguments"]}] + [
        {"name": s["tool"], "arguments": s["arguments"]} for s in item.get("then", [])]
    done = [m for m in messages[user:] if m["role"] == "tool"]
    if len(done) < len(plan):
        return "Let me check. " + tag(plan[len(done)])
    return "The answer: " + done[-1]["content"]


def test_evaluate_with_a_perfect_scripted_model_scores_one_everywhere(registry):
    scores = A.evaluate(oracle, TASKS, registry, few_shot=True, example=True)
    assert scores["task_success"] == 1.0, [r for r in scores["runs"] if not r["success"]]
    assert scores["tool_choice_accuracy"] == scores["valid_call_rate"] == 1.0
    assert scores["exact_call_rate"] == 1.0 and scores["n_with_calls"] == len(TASKS)
    two_step = sum(t["kind"] == "two-step" for t in TASKS)
    assert scores["mean_steps"] == pytest.approx((2 * len(TASKS) + two_step) / len(TASKS))
    assert scores["stopped"] == {"answer": len(TASKS), "max_steps": 0, "repeat": 0}


def test_evaluate_counts_a_model_that_never_calls_as_wrong(registry):
    scores = A.evaluate(lambda m: "I think it is 42.", TASKS[:5], registry, few_shot=False)
    assert scores["tool_choice_accuracy"] == scores["valid_call_rate"] == 0.0
    assert scores["mean_steps"] == 1.0 and scores["stopped"]["answer"] == 5
    no_calls = A.evaluate(lambda m: "5", [{"task": "a", "answer": "5"}], registry)
    assert no_calls["tool_choice_accuracy"] is None and no_calls["task_success"] == 1.0
