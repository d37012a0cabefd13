# expect: passes visible
def train_bpe(text: str, vocab_size: int, pattern: str) -> dict[tuple[int, int], int]:
    # keeps each distinct chunk once but forgets how often it occurs
    if vocab_size < 256:
        raise ValueError("vocab_size must be at least 256")
    words = [list(chunk.encode("utf-8")) for chunk in set(regex.findall(pattern, text))]
    merges = {}
    for new_id in range(256, vocab_size):
        stats = {}
        for word in words:
            for pair in zip(word, word[1:]):
                stats[pair] = stats.get(pair, 0) + 1
        if not stats:
            break
        pair = min(stats, key=lambda p: (-stats[p], p))
        merges[pair] = new_id
        for w, word in enumerate(words):
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            words[w] = out
    return merges
