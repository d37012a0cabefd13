# expect: passes visible
def pretokenize(text: str, pattern: str, special_tokens: dict[str, int],
                allowed_special="none_raise") -> list:
    # with a set, special tokens outside it are treated as ordinary text instead of raising
    if isinstance(allowed_special, str) and allowed_special == "none":
        return regex.findall(pattern, text)
    if isinstance(allowed_special, str) and allowed_special == "none_raise":
        for special in special_tokens:
            if special in text:
                raise ValueError(f"the text contains the special token {special!r}")
        return regex.findall(pattern, text)
    if isinstance(allowed_special, str) and allowed_special == "all":
        allowed = set(special_tokens)
    elif isinstance(allowed_special, (set, frozenset)):
        if not set(allowed_special) <= set(special_tokens):
            raise ValueError("allowed_special names strings that are not special tokens")
        allowed = set(allowed_special)
    else:
        raise ValueError(f"invalid allowed_special: {allowed_special!r}")
    pieces, start = [], 0
    if allowed:
        alternatives = sorted(allowed, key=len, reverse=True)
        for found in regex.finditer("|".join(regex.escape(s) for s in alternatives), text):
            pieces += regex.findall(pattern, text[start : found.start()])
            pieces.append(special_tokens[found.group()])
            start = found.end()
    pieces += regex.findall(pattern, text[start:])
    return pieces
