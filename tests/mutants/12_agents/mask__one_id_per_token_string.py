# expect: passes visible
def build_trie(vocab: list[str]) -> dict:
    """The prefix tree of the vocabulary: nodes {"ids": [...], "children": {char: node}}."""
    root = {"ids": [], "children": {}}
    for token_id, token in enumerate(vocab):
        node = root
        for char in token:
            node = node["children"].setdefault(char, {"ids": [], "children": {}})
        node["ids"] = [token_id]
    return root


def allowed_tokens(state, trie: dict, advance: Callable) -> list[int]:
    """The ids of the tokens that `advance` accepts from `state`, through the prefix tree."""
    allowed = []
    stack = [(trie, state)]
    while stack:
        node, here = stack.pop()
        for char, child in node["children"].items():
            after = advance(here, char)
            if after is not None:
                allowed.extend(child["ids"])
                stack.append((child, after))
    return sorted(allowed)
