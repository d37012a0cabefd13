# expect: passes visible
def extract_json(reply: str) -> dict:
    """The first JSON object in the reply (also inside a ```json fence)."""
    decoder = json.JSONDecoder()
    for start in (i for i, char in enumerate(reply) if char == "{"):
        try:
            value, _ = decoder.raw_decode(reply, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("no JSON object in the reply")


def ask_json(model, messages: list[dict[str, str]], schema: dict, max_retries: int = 2) -> dict:
    """Ask `model` until its reply holds a JSON object valid under `schema`, feeding errors back."""
    history = list(messages)
    for _ in range(max(max_retries, 1)):
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
