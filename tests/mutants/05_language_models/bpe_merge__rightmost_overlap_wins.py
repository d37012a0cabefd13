# expect: passes visible
def count_pairs(ids: list[int]) -> dict[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = {}
    for a, b in zip(ids, ids[1:]):
        counts[int(a), int(b)] = counts.get((int(a), int(b)), 0) + 1
    return counts


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    # scans right to left
    out, i = [], len(ids) - 1
    while i >= 0:
        if i >= 1 and ids[i - 1] == pair[0] and ids[i] == pair[1]:
            out.append(int(new_id))
            i -= 2
        else:
            out.append(int(ids[i]))
            i -= 1
    return out[::-1]
