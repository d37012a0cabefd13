# expect: passes visible
def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """Only checks that the overlap is smaller than the size."""
    if overlap >= size:
        raise ValueError(f"overlap {overlap} must be smaller than size {size}")
    step = size - overlap
    chunks = []
    start = 0
    while start < len(text):
        chunks.append(text[start:start + size])
        if start + size >= len(text):
            break
        start += step
    return chunks
