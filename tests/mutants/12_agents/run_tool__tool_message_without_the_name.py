# expect: fails visible
def run_tool(call: dict, tools: dict) -> str:
    """Run an allowed call with valid arguments; its result, or an error, as text."""
    name, arguments = call["name"], call["arguments"]
    if name not in tools:
        return f"error: unknown tool {name!r}; the tools are: {', '.join(tools)}"
    tool = tools[name]
    problems = schema_errors(arguments, tool.parameters)
    if problems:
        return "error: " + "; ".join(problems)
    try:
        result = tool.function(**arguments)
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"
    if isinstance(result, str):
        return result
    if isinstance(result, float):
        return format(result, ".12g")
    if isinstance(result, int) and not isinstance(result, bool):
        return str(result)
    return json.dumps(result, ensure_ascii=False)


def tool_message(call: dict, content: str, call_id: str) -> dict:
    """The `tool` message that carries a call's result back to the model."""
    return {"role": "tool", "tool_call_id": call_id, "content": content}
