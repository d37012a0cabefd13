# expect: passes visible
def character_costs(text: str, pieces: list[bytes]) -> np.ndarray:
    # shares a token among the characters it touches instead of among its bytes
    pieces = [bytes(p) for p in pieces]
    if any(len(p) == 0 for p in pieces) or b"".join(pieces) != text.encode("utf-8"):
        raise ValueError("the pieces must be non-empty and spell the text's UTF-8 bytes")
    char_of_byte = np.repeat(np.arange(len(text)), [len(c.encode("utf-8")) for c in text])
    costs = np.zeros(len(text))
    start = 0
    for p in pieces:
        chars = np.unique(char_of_byte[start : start + len(p)])
        costs[chars] += 1.0 / len(chars)
        start += len(p)
    return costs
