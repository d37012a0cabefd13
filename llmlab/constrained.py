"""Constrained decoding: the model may only write text that a small grammar accepts.

    >>> from llmlab.constrained import start, advance, is_complete, TokenTrie, token_strings
    >>> schema = {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}
    >>> state = start(schema)
    >>> for char in '{"x": 2.5}': state = advance(state, char)
    >>> is_complete(state)
    True
    >>> advance(start(schema), "[") is None              # no object starts with "["
    True
    >>> trie = TokenTrie(token_strings(chat.tokenizer))  # chat = llmlab.chat.ChatModel.load()
    >>> trie.allowed(start(schema))                      # the ids of tokens that may come first

**The recognizer** reads a JSON value one character at a time and says, after each, whether the
text so far can still grow into a value that matches the schema. Its states are plain tuples
(hashable, immutable): `start(schema) -> state`, `advance(state, char) -> state or None`
(None: the character is refused), `is_complete(state)`. It keeps the model from writing a
dead end: every state it returns has at least one way to finish. The schema subset (the one
`llmlab.agents.validate_arguments` checks): `type` object / string / number / integer /
boolean / null / array, `properties`, `required`, `additionalProperties` (no extra key is ever
written), `enum`, `const`, `minimum`, `maximum`, `items`, `minItems`, `maxItems`,
`minLength`, `maxLength`; `title`, `description`, `default`, `examples` and `format` are
annotations and ignored; any other keyword is refused with a `SchemaError`. The text it accepts
is a canonical subset of JSON:

- objects write their keys in the order of `properties`: every required key, optional keys may
  be skipped, no other key;
- one optional space after each `:` and `,` (a model's natural tokens are `" "`, `'":'`,
  `' "'`), no other whitespace;
- strings hold at most `max_string` characters (an escape such as `\\n` counts as one), numbers
  at most `MAX_NUMBER`; numbers are `-?(0|[1-9][0-9]*)(\\.[0-9]+)?` (no exponent), integers
  have no fraction, and a number may only grow while some completion stays within
  `minimum`/`maximum`.

Where the grammar could stop or go on (a number, which ends at the first character that cannot
extend it), the recognizer extends if it can. In the grammars here no character can both
extend a value and follow it, so that choice never loses a valid text.

**The mask.** `TokenTrie(vocab)` puts the decoded text of every token in a prefix tree.
`allowed(state)` walks the tree depth-first, advancing the recognizer one character per edge
and dropping a whole branch the moment a character is refused, so it looks only at tokens whose
prefixes are still valid, never at all 49,152 one by one; inside a string a branch whose
characters are all ordinary string characters, and short enough for the room left, is taken
whole without walking it. Results are memoised per state (an LRU of `MASK_CACHE` states; string
positions far from the length cap share one entry).

**Byte-level tokens.** SmolLM2's BPE works on bytes, and 313 of its tokens are not whole UTF-8
strings (a piece of a multi-byte character). They are left out of the trie, so they are never
allowed in a constrained position; a character outside ASCII can still be written with a token
that holds it whole (or as a `\\uXXXX` escape). The special tokens (`<|im_end|>`, …) are left
out too; the end-of-turn token is allowed only when the grammar is complete.

**Tool calls.** `tool_call_grammar(tools, tool_choice)` is the text after `<tool_call>`:
`{"name": NAME, "arguments": ARGUMENTS}</tool_call>`, where NAME is one of the offered tools
and ARGUMENTS must match that tool's `parameters`. `generate_constrained(chat, ids, grammar)`
is the masked sampling loop; `generate_tool_reply(chat, ids, tools, tool_choice)` adds the
modes of OpenAI's `tool_choice`: `"auto"` (free text; once the reply ends with `<tool_call>`
the grammar takes over until `</tool_call>`, and the reply ends there), `"required"` (the reply
starts with `<tool_call>`), a named function `{"type": "function", "function": {"name": N}}`
(the same, with N the only name) and `"none"` (free text).
"""

from __future__ import annotations

import codecs
import json
import math
from collections import OrderedDict
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

#: Longest string value the grammar lets the model write (characters).
MAX_STRING = 200
#: Longest number (characters, sign and point included).
MAX_NUMBER = 20
#: Longest array (items) unless `maxItems` says fewer.
MAX_ITEMS = 32
#: How many states' masks a `TokenTrie` keeps.
MASK_CACHE = 4096
TAG_OPEN, TAG_CLOSE = "<tool_call>", "</tool_call>"

_ANNOTATIONS = {"title", "description", "default", "examples", "format", "$schema", "$comment",
                "$id"}
_KEYWORDS = {"type", "properties", "required", "additionalProperties", "enum", "const",
             "minimum", "maximum", "items", "minItems", "maxItems", "minLength", "maxLength"}
_TYPES = ("object", "string", "number", "integer", "boolean", "null", "array")


class SchemaError(ValueError):
    """A schema outside the subset the recognizer supports, or one no value can match."""


# -- the grammar's nodes ------------------------------------------------------------------------
# Nodes are compiled once per schema and never change; they hash by identity, so a state (a
# tuple of frames that name their node) hashes fast.
class _String:
    __slots__ = ("min_len", "max_len")

    def __init__(self, min_len: int, max_len: int):
        self.min_len, self.max_len = min_len, max_len


class _Number:
    __slots__ = ("integer", "lo", "hi")

    def __init__(self, integer: bool, lo: Fraction | None, hi: Fraction | None):
        self.integer, self.lo, self.hi = integer, lo, hi


class _Literal:
    """One of a few fixed texts; each may be followed by a node of its own (`alts[text]`)."""

    __slots__ = ("alts", "prefixes", "extendable")

    def __init__(self, alts: dict[str, Any]):
        self.alts = alts
        self.prefixes = {a[:i] for a in alts for i in range(len(a) + 1)}
        self.extendable = {a[:i] for a in alts for i in range(len(a))}  # proper prefixes


class _Object:
    __slots__ = ("props", "cands", "can_close")

    def __init__(self, props: list[tuple[str, Any, bool]]):
        self.props = props
        n = len(props)
        # cands[j]: prefix of a key literal ('"key":') -> index of the key it completes, or -1,
        # over the keys that may come next when keys j.. are left (no required key skipped)
        self.cands: list[dict[str, int]] = []
        self.can_close = []
        for j in range(n + 1):
            prefixes: dict[str, int] = {}
            for k in range(j, n):
                literal = json.dumps(props[k][0], ensure_ascii=False) + ":"
                for i in range(1, len(literal)):
                    prefixes.setdefault(literal[:i], -1)
                prefixes[literal] = k
                if props[k][2]:
                    break  # a required key: no later key may come before it
            self.cands.append(prefixes)
            self.can_close.append(not any(required for _, _, required in props[j:]))


class _Array:
    __slots__ = ("items", "min_items", "max_items")

    def __init__(self, items: Any, min_items: int, max_items: int):
        self.items, self.min_items, self.max_items = items, min_items, max_items


class _Seq:
    __slots__ = ("parts",)

    def __init__(self, parts: list[Any]):
        self.parts = parts


class Grammar:
    """A compiled grammar: `start()` gives its first state (see `advance`)."""

    def __init__(self, root: Any, names: Sequence[str] = ()):
        self.root = root
        self.names = list(names)

    def start(self) -> tuple:
        return _start(self.root)

    def __repr__(self) -> str:
        return f"Grammar(names={self.names})" if self.names else "Grammar()"


# -- compiling a JSON schema --------------------------------------------------------------------
_COMPILED: OrderedDict[tuple[str, int], Any] = OrderedDict()


def compile_schema(schema: dict, max_string: int = MAX_STRING) -> Grammar:
    """The grammar of the JSON values that match `schema` (cached per schema text)."""
    try:
        key = (json.dumps(schema, sort_keys=True), max_string)
    except (TypeError, ValueError) as error:
        raise SchemaError(f"the schema is not JSON: {error}") from None
    if key not in _COMPILED:
        _COMPILED[key] = _compile(schema, max_string, "schema")
        while len(_COMPILED) > 256:
            _COMPILED.popitem(last=False)
    _COMPILED.move_to_end(key)
    return Grammar(_COMPILED[key])


def _compile(schema: Any, max_string: int, path: str) -> Any:
    if not isinstance(schema, dict):
        raise SchemaError(f"{path}: a schema must be a JSON object, got {schema!r}")
    unknown = sorted(set(schema) - _KEYWORDS - _ANNOTATIONS)
    if unknown:
        raise SchemaError(f"{path}: unsupported keyword(s) {', '.join(unknown)}; the course's "
                          f"subset is {', '.join(sorted(_KEYWORDS))}")
    kind = schema.get("type")
    if kind is not None and kind not in _TYPES:
        raise SchemaError(f"{path}: type must be one of {', '.join(_TYPES)}, got {kind!r}")
    if "enum" in schema or "const" in schema:
        values = [schema["const"]] if "const" in schema else schema["enum"]
        if not isinstance(values, list) or not values:
            raise SchemaError(f"{path}: enum must be a non-empty list")
        values = [v for v in values if kind is None or _has_type(v, kind)]
        if not values:
            raise SchemaError(f"{path}: no value of the enum is of type {kind}")
        return _Literal({json.dumps(v, ensure_ascii=False): None for v in values})
    if kind is None:
        raise SchemaError(f"{path}: give a type (or an enum)")
    if kind == "object":
        props = schema.get("properties", {})
        required = schema.get("required", [])
        if not isinstance(props, dict):
            raise SchemaError(f"{path}: properties must be an object")
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise SchemaError(f"{path}: required must be a list of names")
        missing = [r for r in required if r not in props]
        if missing:
            raise SchemaError(f"{path}: required names {missing} are not in properties")
        extra = schema.get("additionalProperties", True)
        if not isinstance(extra, bool):
            raise SchemaError(f"{path}: additionalProperties must be true or false here")
        return _Object([(name, _compile(sub, max_string, f"{path}.{name}"), name in required)
                        for name, sub in props.items()])
    if kind == "string":
        low = _count(schema, "minLength", path, 0)
        high = min(_count(schema, "maxLength", path, max_string), max_string)
        if low > high:
            raise SchemaError(f"{path}: minLength {low} is more than the {high} characters "
                              "allowed")
        return _String(low, high)
    if kind in ("number", "integer"):
        bounds = []
        for word in ("minimum", "maximum"):
            value = schema.get(word)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int | float)
                                      or not math.isfinite(value)):
                raise SchemaError(f"{path}: {word} must be a number, got {value!r}")
            bounds.append(None if value is None else Fraction(value))
        lo, hi = bounds
        if kind == "integer":
            lo = None if lo is None else Fraction(math.ceil(lo))
            hi = None if hi is None else Fraction(math.floor(hi))
        node = _Number(kind == "integer", lo, hi)
        first = ("n", node, "", "start")
        if not any(_step(first, c) for c in "-0123456789"):
            raise SchemaError(f"{path}: no {kind} of at most {MAX_NUMBER} characters lies "
                              "between minimum and maximum")
        return node
    if kind == "boolean":
        return _Literal({"true": None, "false": None})
    if kind == "null":
        return _Literal({"null": None})
    # array
    if "items" not in schema:
        raise SchemaError(f"{path}: an array needs an items schema")
    low = _count(schema, "minItems", path, 0)
    high = min(_count(schema, "maxItems", path, MAX_ITEMS), MAX_ITEMS)
    if low > high:
        raise SchemaError(f"{path}: minItems {low} is more than the {high} items allowed")
    return _Array(_compile(schema["items"], max_string, f"{path}[]"), low, high)


def _count(schema: dict, word: str, path: str, default: int) -> int:
    value = schema.get(word, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SchemaError(f"{path}: {word} must be a non-negative integer, got {value!r}")
    return value


def _has_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    python = {"object": dict, "string": str, "number": int | float, "boolean": bool,
              "null": type(None), "array": list}[kind]
    return isinstance(value, python) and not (kind == "number" and isinstance(value, bool))


# -- the recognizer -----------------------------------------------------------------------------
# A state is a tuple of frames, the innermost last; a frame is a tuple naming its node:
#   ("s", node, phase, n)          string: phase 0 before the quote, 1 inside, 2 after "\",
#                                  3..6 inside "\uXXXX" (phase - 2 hex digits to go); n chars
#   ("n", node, text, where)       number so far and its place in the number syntax
#   ("l", node, typed)             literal typed so far
#   ("o", node, phase, j, typed)   object (j: index of the key being / last written)
#   ("a", node, phase, count)      array with count items begun
#   ("q", node, i)                 sequence: parts i.. come after the frame above finishes
_KEEP, _DONE, _PASS, _FEED = range(4)
_HEX = frozenset("0123456789abcdefABCDEF")
_ESCAPES = frozenset('"\\/bfnrt')
_NUMBER_ENDS = frozenset({"zero", "int", "frac"})


def start(schema: dict | Grammar, max_string: int = MAX_STRING) -> tuple:
    """The first state of the recognizer for a JSON schema (or a compiled `Grammar`)."""
    grammar = schema if isinstance(schema, Grammar) else compile_schema(schema, max_string)
    return grammar.start()


def _start(node: Any) -> tuple:
    if isinstance(node, _String):
        return (("s", node, 0, 0),)
    if isinstance(node, _Number):
        return (("n", node, "", "start"),)
    if isinstance(node, _Literal):
        return (("l", node, ""),)
    if isinstance(node, _Object):
        return (("o", node, "open", 0, ""),)
    if isinstance(node, _Array):
        return (("a", node, "open", 0),)
    if len(node.parts) == 1:
        return _start(node.parts[0])
    return (("q", node, 1), *_start(node.parts[0]))


def advance(state: tuple, char: str) -> tuple | None:
    """The state after `char`, or None when no valid text continues with it."""
    stack = state
    while stack:
        result = _step(stack[-1], char)
        if result is None:
            return None
        kind, frames = result
        if kind == _KEEP:
            return stack[:-1] + frames
        if kind == _DONE:
            return _resume(stack[:-1])
        if kind == _FEED:
            stack = stack[:-1] + frames
        else:  # _PASS: the top frame is finished; the character belongs to what follows
            stack = _resume(stack[:-1])
    return None


def advance_text(state: tuple | None, text: str) -> tuple | None:
    """`advance` over each character of `text` (None as soon as one is refused)."""
    for char in text:
        if state is None:
            return None
        state = advance(state, char)
    return state


def is_complete(state: tuple) -> bool:
    """Whether the text so far is a whole value (for a number: could stop here)."""
    stack = state
    while stack:
        top = stack[-1]
        if top[0] == "n":
            if not (top[3] in _NUMBER_ENDS and _in_bounds(top[1], top[2])):
                return False
        elif top[0] == "l":
            node, typed = top[1], top[2]
            if typed not in node.alts:
                return False
            if node.alts[typed] is not None:
                stack = stack[:-1] + _start(node.alts[typed])
                continue
        else:
            return False
        stack = _resume(stack[:-1])
    return True


def _resume(stack: tuple) -> tuple:
    """The stack once its top frame's value has finished."""
    while stack and stack[-1][0] == "q":
        _, node, i = stack[-1]
        if i < len(node.parts):
            rest = (("q", node, i + 1),) if i + 1 < len(node.parts) else ()
            return stack[:-1] + rest + _start(node.parts[i])
        stack = stack[:-1]
    return stack


def _step(frame: tuple, c: str) -> tuple | None:
    kind = frame[0]
    if kind == "s":
        return _string_step(frame, c)
    if kind == "l":
        _, node, typed = frame
        longer = typed + c
        if longer in node.prefixes:
            if longer in node.alts and longer not in node.extendable:
                follow = node.alts[longer]
                return (_DONE, None) if follow is None else (_KEEP, _start(follow))
            return _KEEP, (("l", node, longer),)
        if typed in node.alts:
            follow = node.alts[typed]
            return (_PASS, None) if follow is None else (_FEED, _start(follow))
        return None
    if kind == "n":
        return _number_step(frame, c)
    if kind == "o":
        return _object_step(frame, c)
    return _array_step(frame, c)


def _string_step(frame: tuple, c: str) -> tuple | None:
    _, node, phase, n = frame
    if phase == 1:
        if c == '"':
            return (_DONE, None) if n >= node.min_len else None
        if n >= node.max_len or c < " ":
            return None
        return _KEEP, (("s", node, 2 if c == "\\" else 1, n if c == "\\" else n + 1),)
    if phase == 0:
        return (_KEEP, (("s", node, 1, 0),)) if c == '"' else None
    if phase == 2:
        if c in _ESCAPES:
            return _KEEP, (("s", node, 1, n + 1),)
        return (_KEEP, (("s", node, 6, n),)) if c == "u" else None
    if c in _HEX:
        return _KEEP, ((("s", node, 1, n + 1),) if phase == 3 else (("s", node, phase - 1, n),))
    return None


def _object_step(frame: tuple, c: str) -> tuple | None:
    _, node, phase, j, typed = frame
    if phase == "open":
        return (_KEEP, (("o", node, "first", 0, ""),)) if c == "{" else None
    if phase == "comma":
        if c == " ":
            return _KEEP, (("o", node, "next", j, ""),)
        phase = "next"
    if phase in ("first", "next"):
        if c == "}" and phase == "first" and node.can_close[0]:
            return _DONE, None
        if c == '"' and node.cands[j]:
            return _KEEP, (("o", node, "key", j, '"'),)
        return None
    if phase == "key":
        longer = typed + c
        k = node.cands[j].get(longer)
        if k is None:
            return None
        if k < 0:
            return _KEEP, (("o", node, "key", j, longer),)
        return _KEEP, (("o", node, "colon", k, ""),)
    if phase == "colon" and c == " ":
        return _KEEP, (("o", node, "value", j, ""),)
    if phase in ("colon", "value"):
        return _FEED, (("o", node, "after", j, ""), *_start(node.props[j][1]))
    # after the value of key j
    if c == "," and node.cands[j + 1]:
        return _KEEP, (("o", node, "comma", j + 1, ""),)
    if c == "}" and node.can_close[j + 1]:
        return _DONE, None
    return None


def _array_step(frame: tuple, c: str) -> tuple | None:
    _, node, phase, count = frame
    if phase == "open":
        return (_KEEP, (("a", node, "first", 0),)) if c == "[" else None
    if phase == "after":
        if c == "," and count < node.max_items:
            return _KEEP, (("a", node, "comma", count),)
        if c == "]" and count >= node.min_items:
            return _DONE, None
        return None
    if phase == "first" and c == "]":
        return (_DONE, None) if node.min_items == 0 else None
    if phase == "first" and node.max_items == 0:
        return None
    if phase == "comma" and c == " ":
        return _KEEP, (("a", node, "item", count),)
    return _FEED, (("a", node, "after", count + 1), *_start(node.items))


def _number_step(frame: tuple, c: str) -> tuple | None:
    _, node, text, where = frame
    nxt = _number_syntax(where, c, node.integer)
    if nxt is not None and len(text) < MAX_NUMBER:
        longer = text + c
        if (nxt in _NUMBER_ENDS or len(longer) < MAX_NUMBER) and (
                (node.lo is None and node.hi is None) or _feasible(node, longer, nxt)):
            return _KEEP, (("n", node, longer, nxt),)
    if where in _NUMBER_ENDS and _in_bounds(node, text):
        return _PASS, None
    return None


def _number_syntax(where: str, c: str, integer: bool) -> str | None:
    """The place in `-?(0|[1-9][0-9]*)(\\.[0-9]+)?` after `c`, or None."""
    if where in ("start", "minus"):
        if c == "-" and where == "start":
            return "minus"
        return "zero" if c == "0" else "int" if "1" <= c <= "9" else None
    if c == "." and where in ("zero", "int") and not integer:
        return "dot"
    if "0" <= c <= "9" and where != "zero":
        return "frac" if where in ("dot", "frac") else "int"
    return None


def _in_bounds(node: _Number, text: str) -> bool:
    if node.lo is None and node.hi is None:
        return True
    value = Fraction(text)
    return (node.lo is None or value >= node.lo) and (node.hi is None or value <= node.hi)


def _feasible(node: _Number, text: str, where: str) -> bool:
    """Whether some number of at most MAX_NUMBER characters that starts with `text` lies
    within the node's bounds. The values reachable from a prefix form a few arithmetic grids
    (a, a + step, ..., a + count * step), each checked exactly."""
    room = MAX_NUMBER - len(text)
    if where in ("start", "minus"):
        return any(_feasible(node, text + d, _number_syntax(where, d, node.integer))
                   for d in "0123456789" if room >= 1)
    negative = text.startswith("-")
    body = text[1:] if negative else text
    # bounds on the magnitude
    if negative:
        low = None if node.hi is None else -node.hi
        high = None if node.lo is None else -node.lo
    else:
        low, high = node.lo, node.hi
    grids: list[tuple[Fraction, Fraction, int]] = []
    if where in ("zero", "int"):
        whole = int(body)
        for extra in range(room + 1):  # more digits, then maybe a point and decimals
            grids.append((Fraction(whole * 10 ** extra), Fraction(1), 10 ** extra - 1))
            decimals = room - extra - 1
            if not node.integer and decimals >= 1 and (whole or not extra):
                grids.append((Fraction(whole * 10 ** extra), Fraction(1, 10 ** decimals),
                              10 ** (extra + decimals) - 1))
            if not whole:
                break  # "0" takes no more digits before the point
    elif where == "dot":
        if room >= 1:
            grids.append((Fraction(int(body[:-1])), Fraction(1, 10 ** room), 10 ** room - 1))
    else:  # frac
        decimals = len(body) - body.index(".") - 1
        grids.append((Fraction(body), Fraction(1, 10 ** (decimals + room)), 10 ** room - 1))
    for first, step, count in grids:
        k_low = 0 if low is None else max(0, math.ceil((low - first) / step))
        k_high = count if high is None else min(count, math.floor((high - first) / step))
        if k_low <= k_high:
            return True
    return False


# -- finishing in time -------------------------------------------------------------------------
_COMPLETIONS: OrderedDict[tuple, str] = OrderedDict()


def completion(state: tuple) -> str:
    """A short text that finishes `state` (not always the shortest for a bounded number, but
    following it always finishes: the completion of the state after its first characters is
    the rest of it). The sampling loop uses it to close a call before `max_new_tokens`."""
    found = _COMPLETIONS.get(state)
    if found is None:
        found, stack = "", state
        while stack:
            top = stack[-1]
            if top[0] == "l" and top[2] in top[1].alts and top[1].alts[top[2]] is not None:
                stack = stack[:-1] + _start(top[1].alts[top[2]])
                continue
            found += _frame_completion(top)
            stack = _resume(stack[:-1])
        _COMPLETIONS[state] = found
        while len(_COMPLETIONS) > 20000:
            _COMPLETIONS.popitem(last=False)
    return found


def _value_completion(node: Any) -> str:
    return completion(_start(node))


def _frame_completion(frame: tuple) -> str:
    kind, node = frame[0], frame[1]
    if kind == "s":
        phase, n = frame[2], frame[3]
        if phase == 0:
            return '"' + "a" * node.min_len + '"'
        if phase == 2:
            n, head = n + 1, "n"
        elif phase >= 3:
            n, head = n + 1, "0" * (phase - 2)
        else:
            head = ""
        return head + "a" * max(0, node.min_len - n) + '"'
    if kind == "n":
        text, where = frame[2], frame[3]
        tail = ""
        while not (where in _NUMBER_ENDS and _in_bounds(node, text + tail)):
            for c in "0123456789.":
                result = _number_step(("n", node, text + tail, where), c)
                if result is not None and result[0] == _KEEP:
                    tail, where = tail + c, result[1][0][3]
                    break
            else:
                raise AssertionError(f"no way to finish the number {text + tail!r}")
        return tail
    if kind == "l":
        typed = frame[2]
        return min((alt[len(typed):] + (_value_completion(follow) if follow else "")
                    for alt, follow in node.alts.items() if alt.startswith(typed)), key=len)
    if kind == "o":
        phase, j, typed = frame[2], frame[3], frame[4]
        if phase == "open":
            return "{" + _object_rest(node, 0, False)
        if phase == "first":
            return _object_rest(node, 0, False)
        if phase in ("next", "comma", "key"):
            prefix = typed if phase == "key" else ""
            return min((literal[len(prefix):] + _value_completion(node.props[k][1])
                        + _object_rest(node, k + 1, True)
                        for literal, k in node.cands[j].items()
                        if k >= 0 and literal.startswith(prefix)), key=len)
        if phase in ("colon", "value"):
            return _value_completion(node.props[j][1]) + _object_rest(node, j + 1, True)
        return _object_rest(node, j + 1, True)
    if kind == "a":
        phase, count = frame[2], frame[3]
        item = _value_completion(node.items)
        if phase == "open":
            return "[" + ",".join([item] * node.min_items) + "]"
        if phase == "first":
            return ",".join([item] * node.min_items) + "]"
        if phase == "after":
            return ("," + item) * max(0, node.min_items - count) + "]"
        return item + ("," + item) * max(0, node.min_items - count - 1) + "]"
    raise AssertionError(f"a sequence frame is never on top: {frame!r}")


def _object_rest(node: _Object, j: int, after_value: bool) -> str:
    """The required keys from j on (with shortest values), then the closing brace."""
    out = ""
    for k in range(j, len(node.props)):
        name, sub, required = node.props[k]
        if required:
            out += ("," if after_value or out else "") + json.dumps(name, ensure_ascii=False) \
                + ":" + _value_completion(sub)
    return out + "}"


# -- tool calls ---------------------------------------------------------------------------------
def tool_names(tools: Sequence[dict]) -> list[str]:
    """The names of OpenAI-format `tools`, checked (a clear ValueError says what is wrong)."""
    if isinstance(tools, dict | str) or not isinstance(tools, Sequence) or not tools:
        raise ValueError("tools must be a non-empty list of {'type': 'function', "
                         "'function': {'name': ..., 'parameters': {...}}}")
    names = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or \
                not isinstance(function, dict):
            raise ValueError(f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"tools[{i}].function.name must be a non-empty string")
        if name in names:
            raise ValueError(f"tools[{i}]: the name {name!r} is used twice")
        names.append(name)
    return names


def chosen_tools(tools: Sequence[dict], tool_choice: Any = "auto") -> list[dict]:
    """The tools `tool_choice` leaves: all for "auto" and "required", none for "none", the one
    named by `{"type": "function", "function": {"name": N}}` (ValueError if there is none)."""
    names = tool_names(tools)
    if tool_choice in ("auto", "required"):
        return list(tools)
    if tool_choice == "none":
        return []
    name = _named_choice(tool_choice)
    if name not in names:
        raise ValueError(f"tool_choice names the unknown tool {name!r}; the tools are: "
                         f"{', '.join(names)}")
    return [tools[names.index(name)]]


def _named_choice(tool_choice: Any) -> str:
    function = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or \
            tool_choice.get("type", "function") != "function":
        raise ValueError("tool_choice must be 'auto', 'required', 'none' or "
                         "{'type': 'function', 'function': {'name': NAME}}, "
                         f"got {tool_choice!r}")
    return function["name"]


def tool_call_grammar(tools: Sequence[dict], tool_choice: Any = "auto",
                      max_string: int = MAX_STRING) -> Grammar:
    """The grammar of what follows `<tool_call>`: `{"name": NAME, "arguments": ARGUMENTS}`
    then `</tool_call>`, NAME one of the tools `tool_choice` leaves and ARGUMENTS matching that
    tool's `parameters` (a tool without parameters takes `{}`). Raises `SchemaError` for a
    schema outside the subset, `ValueError` for bad tools or tool_choice."""
    offered = chosen_tools(tools, tool_choice)
    if not offered:
        raise ValueError("tool_choice 'none' leaves no tool to call")
    heads: dict[str, Any] = {}
    for tool in offered:
        function = tool["function"]
        name = function["name"]
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        if parameters.get("type", "object") != "object":
            raise SchemaError(f"tool {name!r}: parameters must be a schema of type object")
        arguments = _compile({"type": "object", **parameters}, max_string,
                             f"tool {name!r} parameters")
        rest = _Seq([arguments, _Literal({"}" + TAG_CLOSE: None})])
        quoted = json.dumps(name, ensure_ascii=False)
        for a in ("", " "):
            for b in ("", " "):
                for c in ("", " "):
                    heads[f'{{"name":{a}{quoted},{b}"arguments":{c}'] = rest
    return Grammar(_Literal(heads), [t["function"]["name"] for t in offered])


# -- the prefix tree over the vocabulary --------------------------------------------------------
class _TrieNode:
    __slots__ = ("children", "ids", "plain", "height", "all_ids")

    def __init__(self) -> None:
        self.children: dict[str, _TrieNode] = {}
        self.ids: list[int] = []
        self.plain = True  # every character from here down is an ordinary string character
        self.height = 0  # the longest token below, counted from this node's character
        self.all_ids: list[int] = []


def _plain_char(c: str) -> bool:
    return c not in '"\\' and c >= " "


def token_strings(tokenizer) -> list[str | None]:
    """Each token id's text, or None for the special tokens and for the byte-level tokens that
    are not whole UTF-8 strings (those are never allowed in a constrained position)."""
    specials = set(tokenizer.special_tokens.values())
    strings: list[str | None] = []
    for i in range(tokenizer.n_vocab):
        if i in specials:
            strings.append(None)
            continue
        try:
            strings.append(tokenizer.decode_bytes([i]).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            strings.append(None)
    return strings


class TokenTrie:
    """A prefix tree over the tokens' texts (`vocab[i]` is token i's text; None or "" leaves
    it out) and the masks it makes: `allowed(state)`."""

    def __init__(self, vocab: Sequence[str | None], cache_size: int = MASK_CACHE):
        self.vocab = list(vocab)
        self.root = _TrieNode()
        for i, text in enumerate(self.vocab):
            if not text:
                continue
            node = self.root
            for char in text:
                node = node.children.setdefault(char, _TrieNode())
            node.ids.append(i)
        # bottom-up: plain, height, all_ids (children before parents)
        order, todo = [], [(self.root, "")]
        while todo:
            node, char = todo.pop()
            order.append((node, char))
            todo.extend((child, c) for c, child in node.children.items())
        for node, char in reversed(order):
            node.plain = _plain_char(char) and all(c.plain for c in node.children.values())
            node.height = 1 + max((c.height for c in node.children.values()), default=0)
            if node.plain:
                node.all_ids = node.ids + [i for c in node.children.values()
                                           for i in c.all_ids]
        self.depth = self.root.height - 1  # the longest token
        self._memo: OrderedDict[tuple, list[int]] = OrderedDict()
        self._index: dict[int, Any] = {}
        self.cache_size = cache_size
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return sum(1 for t in self.vocab if t)

    def allowed(self, state: tuple) -> list[int]:
        """The sorted ids of the tokens whose whole text the recognizer accepts from `state`."""
        key = self._key(state)
        found = self._memo.get(key)
        if found is not None:
            self.hits += 1
            self._memo.move_to_end(key)
            return found
        self.misses += 1
        out: list[int] = []
        todo = [(self.root, state)]
        while todo:
            node, here = todo.pop()
            top = here[-1] if here else None
            room = top[1].max_len - top[3] if top and top[0] == "s" and top[2] == 1 else 0
            for char, child in node.children.items():
                if room and child.plain and child.height <= room:
                    out.extend(child.all_ids)  # ordinary string characters that fit
                    continue
                after = advance(here, char)
                if after is None:
                    continue
                out.extend(child.ids)
                if child.children:
                    todo.append((child, after))
        out.sort()
        self._memo[key] = out
        if len(self._memo) > self.cache_size:
            _, dropped = self._memo.popitem(last=False)
            self._index.pop(id(dropped), None)
        return out

    def longest_token(self, text: str) -> int:
        """The id of the longest token that `text` starts with."""
        node, best = self.root, None
        for char in text:
            node = node.children.get(char)
            if node is None:
                break
            if node.ids:
                best = node.ids[0]
        if best is None:
            raise ValueError(f"no token starts the text {text[:20]!r}")
        return best

    def allowed_index(self, state: tuple):
        """`allowed(state)` as a torch index tensor (kept with the memoised list)."""
        import torch

        ids = self.allowed(state)
        index = self._index.get(id(ids))
        if index is None or index[0] is not ids:
            index = (ids, torch.tensor(ids, dtype=torch.long))
            self._index[id(ids)] = index
        return index[1]

    def _key(self, state: tuple) -> tuple:
        """States whose masks are equal by construction share a key: inside a string with at
        least `depth` characters of room (and past minLength), the count does not matter."""
        top = state[-1] if state else None
        if top and top[0] == "s" and top[2] == 1 and top[3] >= top[1].min_len and \
                top[1].max_len - top[3] >= self.depth:
            return (*state[:-1], ("s", top[1], 1, -1))
        return state


def brute_force_allowed(state: tuple, vocab: Sequence[str | None]) -> list[int]:
    """The mask by scanning every token (the reference the trie is tested against)."""
    return [i for i, text in enumerate(vocab) if text and advance_text(state, text) is not None]


_TRIES: dict[int, tuple[Any, TokenTrie]] = {}


def trie_for(tokenizer) -> TokenTrie:
    """The trie over `tokenizer`'s tokens, built once (about a second) and kept."""
    found = _TRIES.get(id(tokenizer))
    if found is None or found[0] is not tokenizer:
        found = (tokenizer, TokenTrie(token_strings(tokenizer)))
        _TRIES[id(tokenizer)] = found
    return found[1]


# -- generating ---------------------------------------------------------------------------------
def generate_constrained(chat, ids: Sequence[int], grammar: Grammar | dict,
                         max_new_tokens: int = 256, temperature: float = 0.0,
                         seed: int | None = None, top_p: float | None = None,
                         top_k: int | None = None, finish=None) -> str:
    """The text a `ChatModel` writes after the prompt `ids` when every token must keep
    `grammar` (a `Grammar` or a JSON schema) valid: prefill, mask the logits to the allowed
    ids, sample, advance the recognizer; stop when the grammar is complete (or the end-of-turn
    token, allowed only once it could be), or after `max_new_tokens`."""
    grammar = grammar if isinstance(grammar, Grammar) else compile_schema(grammar)
    return _generate(chat, ids, grammar, "grammar", max_new_tokens, temperature, seed, top_p,
                     top_k, None, finish)


def generate_tool_reply(chat, ids: Sequence[int], tools: Sequence[dict] | None,
                        tool_choice: Any = "auto", max_new_tokens: int = 256,
                        temperature: float = 0.0, seed: int | None = None,
                        top_p: float | None = None, top_k: int | None = None,
                        stop: str | Sequence[str] | None = None, finish=None) -> str:
    """The model's reply to the prompt `ids` (which should already describe the tools), with
    any tool call kept valid by the grammar. See the module's docstring for the modes; the
    reply ends after the first `</tool_call>`. `stop` strings apply to free text only."""
    if tools:
        chosen_tools(tools, tool_choice)  # checks the tools and tool_choice
    if not tools or tool_choice == "none":
        return _generate(chat, ids, None, "free", max_new_tokens, temperature, seed, top_p,
                         top_k, stop, finish)
    grammar = tool_call_grammar(tools, tool_choice)
    mode = "auto" if tool_choice == "auto" else "forced"
    return _generate(chat, ids, grammar, mode, max_new_tokens, temperature, seed, top_p, top_k,
                     stop, finish)


def _generate(chat, ids, grammar, mode, max_new_tokens, temperature, seed, top_p, top_k, stop,
              finish) -> str:
    import torch

    from llmlab.chat import Finish
    from llmlab.gpt import sample_next

    finish = finish if finish is not None else Finish()
    ids = [int(i) for i in ids]
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if any(not s for s in stops):
        raise ValueError("a stop string must not be empty")
    finish.reason, finish.prompt_tokens, finish.completion_tokens = "length", len(ids), 0
    if max_new_tokens < 0:
        raise ValueError("max_new_tokens must be >= 0")
    trie = trie_for(chat.tokenizer) if grammar is not None else None
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    budget = min(max_new_tokens, chat.context_length - len(ids))
    if budget <= 0:
        if max_new_tokens:
            raise ValueError(f"the prompt ({len(ids)} tokens) leaves no room in the context of "
                             f"{chat.context_length} tokens")
        return ""
    text, state, forced = "", None, []
    if mode == "grammar":
        state = grammar.start()
    elif mode == "forced":  # the reply starts with the tag: feed it as if the model wrote it
        forced = chat.tokenizer.encode_ordinary(TAG_OPEN)
        if len(forced) >= budget:
            return ""
        text, state = TAG_OPEN, grammar.start()
        finish.completion_tokens = len(forced)
    cache, logits = chat.prefill(ids + forced, room=budget)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    vocab = trie.vocab if trie is not None else None

    def feed(tokens: list[int]):
        nonlocal logits
        finish.completion_tokens += len(tokens)
        if finish.completion_tokens < budget and cache.length + len(tokens) <= cache.max_len:
            logits = chat.model(torch.tensor([tokens]), cache, cache.length,
                                last_only=True)[0, -1]

    while finish.completion_tokens < budget:
        if state is not None and not state:  # the grammar is complete: nothing can follow
            finish.reason = "stop"
            break
        if state is None:  # free text
            token = int(sample_next(logits[None].float(), temperature, top_k, top_p,
                                    generator))
            if token in chat.end_ids:
                finish.reason = "stop"
                break
            grown = text + decoder.decode(chat.tokenizer.decode_bytes([token]))
            cut = min((grown.find(s) for s in stops if s in grown), default=-1)
            at = grown.find(TAG_OPEN, max(0, len(text) - len(TAG_OPEN))) \
                if mode == "auto" else -1
            if cut >= 0 and (at < 0 or cut < at + len(TAG_OPEN)):
                text, finish.reason = grown[:cut], "stop"
                break
            if at >= 0:
                after = advance_text(grammar.start(), grown[at + len(TAG_OPEN):])
                if after is None:  # the token runs on past the tag into an invalid call:
                    # take only the tag's own characters, in tokens of their own
                    head = grown[len(text): at + len(TAG_OPEN)]
                    text, state = grown[: at + len(TAG_OPEN)], grammar.start()
                    feed(chat.tokenizer.encode_ordinary(head))
                    continue
                state = after
            text = grown
            feed([token])
            continue
        scores = torch.full_like(logits, float("-inf"), dtype=torch.float32)
        index = trie.allowed_index(state)
        complete = is_complete(state)
        if len(index):
            scores[index] = logits[index].float()
        if complete:
            for end in chat.end_ids:
                scores[end] = logits[end].float()
        elif not len(index):
            raise RuntimeError(f"no token can continue the constrained text {text!r}")
        token = int(sample_next(scores[None], temperature, top_k, top_p, generator))
        left = budget - finish.completion_tokens  # this token included
        if token not in chat.end_ids and \
                len(completion(advance_text(state, vocab[token]))) > left - 1:
            # no room left to finish after this token: follow the shortest completion instead
            ending = completion(state)
            token = trie.longest_token(ending) if ending else next(iter(chat.end_ids))
        if token in chat.end_ids:
            finish.reason = "stop"
            break
        state = advance_text(state, vocab[token])
        text += vocab[token]
        feed([token])
    return text
