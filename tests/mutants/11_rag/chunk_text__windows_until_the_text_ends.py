# expect: fails visible
def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """A window at every step until the text ends (the tail windows lie inside earlier ones)."""
    if not 0 <= overlap < size:
        raise ValueError(f"need 0 <= overlap < size, got size={size}, overlap={overlap}")
    return [text[start:start + size] for start in range(0, len(text), size - overlap)]
