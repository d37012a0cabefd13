# expect: passes visible
def build_messages(question: str, sources: list[tuple[str, str]]) -> list[dict]:
    """A system message and a user message with the numbered sources, then the question."""
    blocks = [f"[{i}] ({topic}) {text.strip()}" for i, (topic, text) in enumerate(sources, 1)]
    user = "\n\n".join(blocks) + f"\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def cited_numbers(answer: str, n_sources: int) -> list[int]:
    """The numbers in [n] or [n, m] citations, in order of first appearance, each once."""
    import re

    found = []
    for group in re.findall(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]", answer):
        for piece in group.split(","):
            number = int(piece)
            if 1 <= number <= n_sources and number not in found:
                found.append(number)
    return found
