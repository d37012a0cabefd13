# expect: fails visible
def count_pairs(ids: list[int]) -> dict[tuple[int, int], int]:
    return {(int(a), int(b)): 1 for a, b in zip(ids, ids[1:])}


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
