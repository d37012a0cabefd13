# expect: fails visible
def bpe_encode(text: str, ranks: dict[bytes, int], pattern: str) -> list[int]:
    # merges the leftmost pair that is in the table, whatever its rank
    ids = []
    for chunk in regex.findall(pattern, text):
        parts = [bytes([b]) for b in chunk.encode("utf-8")]
        merged = True
        while merged and len(parts) >= 2:
            merged = False
            for i in range(len(parts) - 1):
                if parts[i] + parts[i + 1] in ranks:
                    parts[i : i + 2] = [parts[i] + parts[i + 1]]
                    merged = True
                    break
        ids.extend(int(ranks[part]) for part in parts)
    return ids
