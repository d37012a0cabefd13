# expect: fails visible
def parse_tool_calls(reply: str | dict) -> list[dict]:
    """The tool calls in model text or in an OpenAI-shape assistant message."""
    if isinstance(reply, dict):
        calls = []
        for entry in reply.get("tool_calls") or []:
            name, text = entry["function"]["name"], entry["function"]["arguments"]
            try:
                arguments = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ToolCallError(f"the arguments of {name!r} are not JSON: {exc}") from None
            if not isinstance(arguments, dict):
                raise ToolCallError(f"the arguments of {name!r} must be a JSON object")
            calls.append({"name": name, "arguments": arguments})
        return calls

    if "<tool_call>" in reply:
        calls = []
        for body in re.findall(r"<tool_call>(.*)</tool_call>", reply, flags=re.S):
            try:
                value = json.loads(body)
            except json.JSONDecodeError as exc:
                raise ToolCallError(f"a tool call is not valid JSON: {exc}") from None
            if not (isinstance(value, dict) and isinstance(value.get("name"), str)
                    and isinstance(value.get("arguments"), dict)):
                raise ToolCallError('a tool call must be a JSON object with a string "name" '
                                    'and an object "arguments"')
            calls.append({"name": value["name"], "arguments": value["arguments"]})
        return calls

    decoder = json.JSONDecoder()
    start = reply.find("{")
    while start >= 0:
        try:
            value, end = decoder.raw_decode(reply, start)
        except json.JSONDecodeError:
            start = reply.find("{", start + 1)
            continue
        if set(value) == {"name", "arguments"} and isinstance(value["name"], str):
            arguments = value["arguments"]
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except json.JSONDecodeError:
                    arguments = None
            if isinstance(arguments, dict):
                return [{"name": value["name"], "arguments": arguments}]
        start = reply.find("{", end)  # the next object after this one, never one inside it
    return []
