"""Template parameters for the local stack, set one way: `make run PARAMS="Name=Value Name=Value"`.

    make run PARAMS="ScenarioMissedCallLeads=true CrmEventTypes=LeadCreated,CallMissed" CRM_RECEIVER=1
    make run PARAMS="WidgetFrameAncestors='https://crm.example https://*.crm.example'"

The syntax is `sam deploy --parameter-overrides`' (space-separated, shell quoting for a value with
spaces), and the values are checked as CloudFormation checks them at deploy time, against the
template's own `Parameters`: the name (a typo is refused with the valid names), AllowedValues,
AllowedPattern, MinValue/MaxValue, MinLength/MaxLength, and the template's `Rules`. The stack then
resolves the template with them, as a deployment does: each parameter reaches the functions'
environment, the conditions and the resources exactly where the template references it.

A make variable that stands for one parameter (`make run PBX_API=v1`) is one line in SHORTHANDS.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Mapping
from typing import Any

PARAMS_VARIABLE = "PARAMS"

# A make variable that sets one template parameter: its name -> the parameter's. Set both ways at
# once (the variable and PARAMS), the two are refused rather than one silently winning.
SHORTHANDS: dict[str, str] = {}


class ParameterError(ValueError):
    """A parameter the template would refuse: the message says which and what it accepts."""


def parse_overrides(text: str) -> dict[str, str]:
    """`Name=Value Name2="a value"` -> {Name: Value, Name2: "a value"}."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ParameterError(f"{PARAMS_VARIABLE}: cannot read {text!r}: {exc}") from None
    values: dict[str, str] = {}
    for word in words:
        name, equals, value = word.partition("=")
        if not equals or not name:
            raise ParameterError(f'{PARAMS_VARIABLE}: {word!r} is not Name=Value (e.g. PARAMS="LogLevel=INFO")')
        if name in values:
            raise ParameterError(f"{PARAMS_VARIABLE}: {name} is given twice")
        values[name] = value
    return values


def check_parameter(name: str, value: str, declared: Mapping[str, Any]) -> None:
    """Raise ParameterError unless the template's `Parameters` would take `value` for `name`."""
    if name not in declared:
        close = difflib.get_close_matches(name, declared, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ParameterError(
            f"template.yaml has no parameter {name!r}{hint}\nIts parameters: {', '.join(sorted(declared))}"
        )
    spec = declared[name]
    kind = spec.get("Type", "String")
    allowed = [str(v) for v in spec.get("AllowedValues", ())]
    if allowed and value not in allowed:
        raise ParameterError(f"{name}={value!r} is not allowed; one of: {', '.join(allowed)}")
    if kind == "Number":
        try:
            number = float(value)
        except ValueError:
            raise ParameterError(f"{name}={value!r} is not a number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise ParameterError(f"{name}={value} is below its minimum {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise ParameterError(f"{name}={value} is above its maximum {spec['MaxValue']}")
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        raise ParameterError(f"{name}: at least {spec['MinLength']} characters")
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        raise ParameterError(f"{name}: at most {spec['MaxLength']} characters")
    pattern = spec.get("AllowedPattern")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        description = spec.get("Description", "")
        raise ParameterError(
            f"{name}={value!r} does not match {pattern}" + (f" ({description})" if description else "")
        )


def checked(values: Mapping[str, str], body: Mapping[str, Any]) -> dict[str, str]:
    """`values`, each checked against the template `body`'s Parameters."""
    declared = body.get("Parameters", {})
    for name, value in values.items():
        check_parameter(name, value, declared)
    return dict(values)


def parameters_from_environment(environ: Mapping[str, str], body: Mapping[str, Any]) -> dict[str, str]:
    """The parameters `make run` was given: PARAMS, and any SHORTHANDS variable, checked."""
    values = parse_overrides(environ.get(PARAMS_VARIABLE, ""))
    for variable, name in SHORTHANDS.items():
        value = environ.get(variable, "")
        if not value:
            continue
        if name in values and values[name] != value:
            raise ParameterError(
                f"{name} is given twice: {variable}={value} and {PARAMS_VARIABLE} {name}={values[name]}"
            )
        values[name] = value
    return checked(values, body)
