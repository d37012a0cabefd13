# expect: passes visible
def validate_arguments(arguments: dict, schema: dict) -> list[str]:
    """What is wrong with `arguments` under `schema` (the course's JSON Schema subset)."""
    def has_type(value, name):
        if name == "object":
            return isinstance(value, dict)
        if name == "array":
            return isinstance(value, list)
        if name == "string":
            return isinstance(value, str)
        if name == "boolean":
            return isinstance(value, bool)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return name == "number" or isinstance(value, int)

    def described(value):
        for name in ("boolean", "integer", "number", "string", "array", "object"):
            if has_type(value, name):
                return f"a {name}" if name[0] not in "aeiou" else f"an {name}"
        return "null" if value is None else repr(value)

    def check(value, schema, path, errors):
        if "type" in schema and not has_type(value, schema["type"]):
            errors.append(f"argument {path!r} must be of type {schema['type']}, "
                          f"got {described(value)}")
            return
        if "enum" in schema and value not in schema["enum"]:
            errors.append(f"argument {path!r} must be one of {schema['enum']!r}, got {value!r}")
            return
        if isinstance(value, int | float) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                errors.append(f"argument {path!r} must be >= {schema['minimum']}, got {value}")
            if "maximum" in schema and value > schema["maximum"]:
                errors.append(f"argument {path!r} must be <= {schema['maximum']}, got {value}")
        if isinstance(value, dict):
            prefix = f"{path}." if path else ""
            properties = schema.get("properties", {})
            for key in schema.get("required", []):
                if key not in value:
                    errors.append(f"missing required argument {prefix + key!r}")
            for key, item in value.items():
                if key in properties:
                    check(item, properties[key], prefix + key, errors)
                elif schema.get("additionalProperties", True) is False:
                    errors.append(f"unknown argument {prefix + key!r}")
        if isinstance(value, list) and "items" in schema:
            for i, item in enumerate(value):
                check(item, schema["items"], f"{path}[{i}]", errors)

    errors = []
    check(arguments, schema, "", errors)
    return errors
