# expect: passes visible
def fill_template(template: str, **values) -> str:
    """The template filled by str.format; a missing value becomes a ValueError."""
    try:
        return template.format(**values)
    except KeyError as error:
        raise ValueError(f"no value for the slot {error}") from None
