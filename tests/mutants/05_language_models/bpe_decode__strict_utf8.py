# expect: passes visible
def bpe_decode(ids: list[int], merges: dict[tuple[int, int], int]) -> str:
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), new_id in merges.items():
        vocab[new_id] = vocab[a] + vocab[b]
    try:
        data = b"".join(vocab[int(i)] for i in ids)
    except KeyError as err:
        raise ValueError(f"unknown token id {err.args[0]}") from None
    return data.decode("utf-8")  # raises on half a character
