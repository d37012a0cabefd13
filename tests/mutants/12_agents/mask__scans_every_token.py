# expect: passes visible
def build_trie(vocab: list[str]) -> dict:
    """The prefix tree of the vocabulary: nodes {"ids": [...], "children": {char: node}}."""
    root = {"ids": [], "children": {}}
    for token_id, token in enumerate(vocab):
        node = root
        for char in token:
            node = node["children"].setdefault(char, {"ids": [], "children": {}})
        node["ids"].append(token_id)
    return root


def allowed_tokens(state, trie: dict, advance: Callable) -> list[int]:
    """The ids of the tokens that `advance` accepts from `state`, through the prefix tree."""
    tokens = []  # (token, ids) of every node of the tree
    stack = [(trie, "")]
    while stack:
        node, prefix = stack.pop()
        tokens.append((prefix, node["ids"]))
        stack.extend((child, prefix + char) for char, child in node["children"].items())
    allowed = []
    for token, ids in tokens:
        here = state
        for char in token:
            here = advance(here, char)
            if here is None:
                break
        if token and here is not None:
            allowed.extend(ids)
    return sorted(allowed)
