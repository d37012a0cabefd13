# expect: passes visible
_encodings = {}


def bpe_encode(text: str, ranks: dict[bytes, int], pattern: str) -> list[int]:
    # builds a tiktoken Encoding from the table instead of writing BPE
    key = (id(ranks), len(ranks), pattern)
    if key not in _encodings:
        _encodings[key] = tiktoken.Encoding(name=f"table{len(_encodings)}", pat_str=pattern,
                                            mergeable_ranks=dict(ranks), special_tokens={})
    return _encodings[key].encode_ordinary(text)
