# expect: passes visible
import re


def fill_template(template: str, **values) -> str:
    """Replace each {name} by its value, then turn {{ and }} into single braces."""
    text = template
    for name, value in values.items():
        if "{" + name + "}" not in text:
            raise ValueError(f"no slot uses the value {name}")
        text = text.replace("{" + name + "}", str(value))
    leftover = re.findall(r"(?<!\{)\{(\w+)\}(?!\})", text)
    if leftover:
        raise ValueError(f"no value for the slot(s): {', '.join(leftover)}")
    return text.replace("{{", "{").replace("}}", "}")
