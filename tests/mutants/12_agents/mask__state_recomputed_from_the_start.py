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
    allowed = []
    stack = [(trie, "")]
    while stack:
        node, prefix = stack.pop()
        for char, child in node["children"].items():
            after = state
            for c in prefix + char:  # the state of the prefix, from the start state again
                after = advance(after, c)
                if after is None:
                    break
            if after is not None:
                allowed.extend(child["ids"])
                stack.append((child, prefix + char))
    return sorted(allowed)
