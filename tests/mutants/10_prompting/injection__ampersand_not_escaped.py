# expect: passes visible
def looks_like_injection(text: str) -> bool:
    """True if the text matches one of the stated injection rules (after normalizing it)."""
    import re
    import unicodedata

    normal = unicodedata.normalize("NFKC", text)
    for zero_width in "\u200b\u200c\u200d\u2060\ufeff":
        normal = normal.replace(zero_width, "")
    normal = normal.casefold()
    words = re.findall(r"[a-z0-9]+", normal)
    verbs = {"ignore", "disregard", "forget", "override"}
    targets = {"instruction", "instructions", "rules", "prompt", "directions"}
    for i, word in enumerate(words):
        if word in verbs and targets.intersection(words[i + 1:i + 6]):
            return True
        if words[i:i + 3] == ["you", "are", "now"] or words[i:i + 2] == ["system", "prompt"]:
            return True
    if "<|" in normal:
        return True
    return any(line.lstrip().startswith(("system:", "assistant:")) for line in normal.splitlines())


def wrap_untrusted(text: str, tag: str = "untrusted") -> str:
    """The text between <tag> delimiters, escaped so that it cannot close them."""
    body = text.replace("<", "&lt;").replace(">", "&gt;")
    return f"<{tag}>\n{body}\n</{tag}>"
