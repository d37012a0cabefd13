# expect: passes visible
def calls_equal(a: dict, b: dict) -> bool:
    """Same tool name, and arguments equal as JSON values."""
    def same(x, y):
        if isinstance(x, bool) or isinstance(y, bool):
            return isinstance(x, bool) and isinstance(y, bool) and x == y
        if isinstance(x, int | float) and isinstance(y, int | float):
            return x == y
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        if isinstance(x, list) and isinstance(y, list):
            return len(x) == len(y) and all(same(u, v) for u, v in zip(x, y))
        return type(x) is type(y) and x == y  # strings, None

    return a["name"] == b["name"] and a["arguments"] == b["arguments"]


def function_calling_metrics(predicted: list, expected: list[dict], tools: dict) -> dict:
    """Tool-choice accuracy, valid-call rate and exact-call rate of predicted calls."""
    if len(predicted) != len(expected):
        raise ValueError(f"{len(predicted)} predictions for {len(expected)} tasks")
    if not expected:
        raise ValueError("no tasks to score")
    right = valid = exact = 0
    for guess, truth in zip(predicted, expected):
        if isinstance(guess, list):
            guess = guess[0] if guess else None
        if guess is None:
            continue
        right += guess["name"] == truth["name"]
        tool = tools.get(guess["name"])
        valid += tool is not None and not schema_errors(guess["arguments"], tool.parameters)
        exact += calls_equal(guess, truth)
    n = len(expected)
    return {"n": n, "tool_choice_accuracy": right / n, "valid_call_rate": valid / n,
            "exact_call_rate": exact / n}
