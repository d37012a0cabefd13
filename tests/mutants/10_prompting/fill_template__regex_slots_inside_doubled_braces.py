# expect: passes visible
import re


def fill_template(template: str, **values) -> str:
    """Fill every {name} found by a regular expression, then unescape doubled braces."""
    names = re.findall(r"\{(\w+)\}", template)
    missing = [n for n in names if n not in values]
    if missing:
        raise ValueError(f"no value for the slot(s): {', '.join(missing)}")
    unused = [n for n in values if n not in names]
    if unused:
        raise ValueError(f"value(s) that no slot uses: {', '.join(unused)}")
    pieces = re.split(r"(\{\w+\})", template)
    out = []
    for piece in pieces:
        if re.fullmatch(r"\{\w+\}", piece):
            out.append(str(values[piece[1:-1]]))
        else:
            out.append(piece.replace("{{", "{").replace("}}", "}"))
    return "".join(out)
