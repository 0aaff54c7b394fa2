"""Dump the Prefect settings tree of the installed wheel for services/config.

Run it with the project's virtualenv under a controlled environment so the
output depends on nothing but the wheel:

    env -i HOME=/__HOME__ PATH=/usr/bin:/bin \
        .venv/bin/python tools/dump-settings.py > services/config/settings_defaults.json

It walks the pydantic models from prefect.settings.Settings and records, for
every group and leaf field in declaration order: its path, a value kind the Go
loader knows how to parse, whether it is nullable or secret, the environment
variable names Prefect accepts (canonical name first, then the legacy
validation aliases, in Prefect's priority order), numeric bounds, and the
default as Settings() serialises it. Defaults that Prefect derives from other
settings after validation (paths below PREFECT_HOME, the database URL, ...)
are flagged "derived" so the loader recomputes them.
"""

import datetime
import inspect
import json
import os
import pathlib
import sys
import tempfile
import types
import typing

HOME_PLACEHOLDER = "/__HOME__"

if os.environ.get("HOME") != HOME_PLACEHOLDER or any(
    k.startswith("PREFECT_") for k in os.environ
):
    sys.exit(
        "run under `env -i HOME=/__HOME__ PATH=/usr/bin:/bin` so the dump is deterministic"
    )
# .env, prefect.toml and pyproject.toml in the working directory are settings
# sources too: run from an empty directory.
os.chdir(tempfile.mkdtemp())

import annotated_types  # noqa: E402
import pydantic  # noqa: E402
from pydantic import AliasChoices, SecretStr  # noqa: E402

import prefect  # noqa: E402
from prefect.settings import Settings  # noqa: E402
from prefect.settings.base import PrefectBaseSettings  # noqa: E402
from prefect.settings.constants import DEFAULT_PROFILES_PATH  # noqa: E402
from prefect.settings.sources import ProfileSettingsTomlLoader, _read_toml_file  # noqa: E402

# The profile source would fold the wheel's default profile (ephemeral) into
# the field defaults; the loader applies that profile as its own, lowest
# priority source instead, so it is dumped separately below.
ProfileSettingsTomlLoader._load_profile_settings = lambda self: {}

NONE_TYPE = type(None)


def unwrap(annotation):
    """Strip Annotated and Optional, reporting nullability and validators."""
    nullable = False
    validators = []
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            args = typing.get_args(annotation)
            validators.extend(args[1:])
            annotation = args[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not NONE_TYPE]
            if len(args) < len(typing.get_args(annotation)):
                nullable = True
            if len(args) == 1:
                annotation = args[0]
                continue
            return typing.Union[tuple(args)], nullable, validators
        return annotation, nullable, validators


def validator_names(validators, field):
    names = []
    for v in list(validators) + list(field.metadata):
        func = getattr(v, "func", None)
        if func is None:
            continue
        base = getattr(func, "func", func)  # functools.partial
        names.append(getattr(base, "__name__", ""))
    return names


def set_items(validators, field):
    """Item type of a validate_set_T_from_delim_string set: str or int,
    with the item's bounds (StatusCode is an int in [100, 599])."""
    for v in list(validators) + list(field.metadata):
        func = getattr(v, "func", None)
        if getattr(getattr(func, "func", None), "__name__", "") != "validate_set_T_from_delim_string":
            continue
        item = func.keywords["type_"]
        base = item
        out = {}
        if typing.get_origin(item) is typing.Annotated:
            base, *meta = typing.get_args(item)
            for m in meta:
                for sub in getattr(m, "metadata", [m]):
                    for attr in ("gt", "ge", "lt", "le"):
                        if isinstance(sub, getattr(annotated_types, attr.capitalize())):
                            out["item_" + attr] = getattr(sub, attr)
        if base is int:
            out["item_kind"] = "int"
        elif base is str:
            out["item_kind"] = "string"
        else:
            raise SystemExit(f"unsupported set item type {item!r}")
        return out
    raise SystemExit(f"no set validator on {field!r}")


def is_complex(annotation):
    origin = typing.get_origin(annotation) or annotation
    return origin in (list, set, frozenset, tuple, dict) or (
        inspect.isclass(origin) and issubclass(origin, (list, set, dict, tuple))
    )


def classify(field):
    annotation, nullable, validators = unwrap(field.annotation)
    vnames = validator_names(validators, field)
    entry = {"nullable": nullable}
    origin = typing.get_origin(annotation)
    if "validate_set_T_from_delim_string" in vnames:
        entry["kind"] = "set"
        entry.update(set_items(validators, field))
    elif annotation is datetime.timedelta:
        entry["kind"] = (
            "seconds" if "_convert_seconds_to_timedelta" in vnames else "duration"
        )
    elif annotation is bool:
        entry["kind"] = "bool"
    elif annotation is int:
        entry["kind"] = "int"
    elif annotation is float:
        entry["kind"] = "float"
    elif annotation is str:
        entry["kind"] = "string"
    elif annotation is SecretStr:
        entry["kind"] = "string"
        entry["secret"] = True
    elif inspect.isclass(annotation) and issubclass(annotation, pathlib.PurePath):
        entry["kind"] = "path"
    elif origin is typing.Literal:
        entry["kind"] = "enum"
        entry["choices"] = list(typing.get_args(annotation))
        # Some Literal fields (LogLevel) upper-case their input first; probe
        # the field's own validators rather than guessing.
        probe = str(entry["choices"][0]).lower()
        if probe != entry["choices"][0]:
            try:
                field_adapter(field).validate_python(probe)
                entry["case_insensitive"] = True
            except pydantic.ValidationError:
                pass
    elif origin is typing.Union:
        members = [unwrap(a)[0] for a in typing.get_args(annotation)]
        # pydantic-settings decodes such a value as JSON and, because a
        # scalar member exists, keeps the raw string when decoding fails.
        entry["kind"] = "json_or_string" if any(
            not is_complex(m) for m in members
        ) else "json"
        for m in members:
            if typing.get_origin(m) is list and typing.get_args(m) == (float,):
                # list[float] turns JSON integers into floats (1 -> 1.0).
                entry["item_kind"] = "float"
    elif is_complex(annotation):
        entry["kind"] = "json"
        args = typing.get_args(annotation)
        if origin is dict and len(args) == 2:
            value_type, _, value_validators = unwrap(args[1])
            if value_type is datetime.timedelta and "_convert_seconds_to_timedelta" in validator_names(value_validators, field):
                entry["item_kind"] = "seconds"
    elif annotation is typing.Any:
        entry["kind"] = "json_or_string"
    else:
        raise SystemExit(f"unsupported settings type {field.annotation!r}")
    if "_parse_vacuum_enabled" in vnames:
        # Union[set[str], bool, None] whose validator takes comma lists and
        # the legacy booleans; see ServerServicesDBVacuumSettings.
        entry["kind"] = "vacuum_set"
    return entry


def bounds(field):
    out = {}
    for m in field.metadata:
        for attr, key in (("gt", "gt"), ("ge", "ge"), ("lt", "lt"), ("le", "le")):
            if isinstance(m, getattr(annotated_types, attr.capitalize())):
                value = getattr(m, attr)
                if isinstance(value, datetime.timedelta):
                    value = value.total_seconds()
                out[key] = value
    return out


def env_names(model, name, field):
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [c.upper() for c in alias.choices if isinstance(c, str)]
    if isinstance(alias, str):
        return [alias.upper()]
    return [f"{model.model_config.get('env_prefix')}{name.upper()}"]


def placeholder(value):
    if isinstance(value, str):
        return value.replace(HOME_PLACEHOLDER, "~")
    if isinstance(value, list):
        return [placeholder(v) for v in value]
    if isinstance(value, dict):
        return {k: placeholder(v) for k, v in value.items()}
    return value


def field_adapter(field):
    """A validator for one field with its Annotated metadata re-attached."""
    if field.metadata:
        return pydantic.TypeAdapter(
            typing.Annotated[(field.annotation, *field.metadata)]
        )
    return pydantic.TypeAdapter(field.annotation)


def jsonable(value):
    return pydantic.TypeAdapter(typing.Any).dump_python(value, mode="json")


def walk(model, instance, path, out):
    for name, field in model.model_fields.items():
        sub = path + [name]
        value = getattr(instance, name)
        if inspect.isclass(field.annotation) and issubclass(
            field.annotation, PrefectBaseSettings
        ):
            out.append({"path": sub, "kind": "group"})
            walk(field.annotation, value, sub, out)
            continue
        entry = {"path": sub}
        entry.update(classify(field))
        entry["env"] = env_names(model, name, field)
        entry.update(bounds(field))
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, (set, frozenset)):
            value = sorted(value)
        entry["default"] = placeholder(jsonable(value))
        if field.default_factory_takes_validated_data:
            entry["derived"] = True
        elif field.default_factory is None:
            # Validate the declared default the way the field would, so a
            # before-validator's normalisation is not mistaken for derivation.
            declared = field_adapter(field).validate_python(field.get_default())
            if isinstance(declared, SecretStr):
                declared = declared.get_secret_value()
            if isinstance(declared, (set, frozenset)):
                declared = sorted(declared)
            if jsonable(declared) != jsonable(value):
                # Set after validation by a model validator (post_hoc_settings).
                entry["derived"] = True
        if field.description:
            entry["description"] = " ".join(field.description.split())
        out.append(entry)


def main():
    settings = Settings()
    fields = []
    walk(Settings, settings, [], fields)
    profiles = _read_toml_file(DEFAULT_PROFILES_PATH)
    default_profile = profiles.get("profiles", {}).get(profiles.get("active"), {})
    json.dump(
        {
            "prefect_version": prefect.__version__,
            "default_profile": default_profile,
            "fields": fields,
        },
        sys.stdout,
        indent=1,
        sort_keys=False,
    )
    sys.stdout.write("\n")


main()
