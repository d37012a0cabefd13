# expect: passes visible
def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """Starts while the overlap with the previous window leaves something new (text > overlap)."""
    if not 0 <= overlap < size:
        raise ValueError(f"need 0 <= overlap < size, got size={size}, overlap={overlap}")
    return [text[start:start + size] for start in range(0, len(text) - overlap, size - overlap)]
