# expect: passes visible
def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """Full windows only: the last one is moved back so that it ends at the end of the text."""
    if not 0 <= overlap < size:
        raise ValueError(f"need 0 <= overlap < size, got size={size}, overlap={overlap}")
    if len(text) <= size:
        return [text] if text else []
    step = size - overlap
    starts = list(range(0, len(text) - size, step)) + [len(text) - size]
    return [text[start:start + size] for start in starts]
