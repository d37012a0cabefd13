# expect: passes visible
def run_agent(model: Callable, messages: list[dict], execute: Callable,
              max_steps: int = 5) -> AgentResult:
    """Ask the model, run its calls, repeat: until it answers, repeats a call or runs out."""
    history = list(messages)
    made = []
    for step in range(1, max_steps + 1):
        reply = model(history)
        entries = reply.get("tool_calls") or []
        if not entries:
            history.append(reply)
            return AgentResult(reply["content"], "answer", history, step)
        calls, broken = [], None
        for entry in entries:
            name = entry["function"]["name"]
            try:
                arguments = json.loads(entry["function"]["arguments"])
            except json.JSONDecodeError:
                arguments = None
            if not isinstance(arguments, dict):
                broken = name
                break
            calls.append({"name": name, "arguments": arguments})
        if broken is not None:
            history.append({"role": "assistant", "content": reply["content"] or ""})
            history.append({"role": "user", "content": f"error: the arguments of {broken!r} are "
                            "not a JSON object; write the call again"})
            continue
        history.append(reply)
        if any(call in made or call in calls[:i] for i, call in enumerate(calls)):
            return AgentResult(None, "repeat", history, step)
        for entry, call in zip(entries, calls):
            history.append({"role": "tool", "tool_call_id": entry["id"], "name": call["name"],
                            "content": execute(call)})
        made += calls
    return AgentResult(None, "max_steps", history, max_steps)
