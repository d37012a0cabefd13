# expect: passes visible
def final_number(reply: str) -> int | float | None:
    """The number a chain-of-thought reply settles on (after its last 'answer', else the last)."""
    import re

    # an optional minus that does not follow a digit, digits not inside another number,
    # thousands groups of exactly three digits, a decimal part with at least one digit
    pattern = re.compile(r"(?:(?<!\d)-)?(?<!\d)\d+(?:,\d{3}(?!\d))*(?:\.\d+)?")
    numbers = [(m.start(), m.group()) for m in pattern.finditer(reply)]
    if not numbers:
        return None
    marker = reply.lower().rfind("answer")
    after = []
    text = (after[0] if after else numbers[-1][1]).replace(",", "")
    return float(text) if "." in text else int(text)
