# expect: passes visible
def count_pairs(ids: list[int]) -> dict[tuple[int, int], int]:
    # skips a pair that overlaps the previous identical pair, as if it were merged already
    counts: dict[tuple[int, int], int] = {}
    previous = None
    for i, pair in enumerate(zip(ids, ids[1:])):
        pair = (int(pair[0]), int(pair[1]))
        if pair == previous and pair[0] == pair[1]:
            previous = None
            continue
        counts[pair] = counts.get(pair, 0) + 1
        previous = pair
    return counts


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(int(new_id))
            i += 2
        else:
            out.append(int(ids[i]))
            i += 1
    return out
