# expect: passes visible
def extract_json(reply: str) -> dict:
    """The JSON object in the reply: the shortest {...}."""
    import re

    match = re.search(r"\{.*?\}", reply, re.DOTALL)
    if match is None:
        raise ValueError("no JSON object in the reply")
    try:
        value = json.loads(match.group())
    except json.JSONDecodeError:
        raise ValueError("no JSON object in the reply") from None
    if not isinstance(value, dict):
        raise ValueError("no JSON object in the reply")
    return value


def ask_json(model, messages: list[dict[str, str]], schema: dict, max_retries: int = 2) -> dict:
    """Ask `model` until its reply holds a JSON object valid under `schema`, feeding errors back."""
    history = list(messages)
    for _ in range(1 + max_retries):
        reply = model(history)
        try:
            value = extract_json(reply)
            jsonschema.validate(value, schema)
            return value
        except jsonschema.ValidationError as error:
            reason = f"the JSON object does not match the schema: {error.message}"
        except ValueError:
            reason = "the reply holds no JSON object"
        history = history + [
            {"role": "assistant", "content": reply},
            {"role": "user", "content": f"That reply was not valid: {reason}. "
                                        "Answer again with only the corrected JSON object."},
        ]
    raise ValueError(f"no valid JSON object after {1 + max_retries} replies; last reason: {reason}")
