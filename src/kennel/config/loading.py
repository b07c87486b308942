"""Reading ``kennel.yaml``: YAML errors with line:col, validation errors that name the key,
``${VAR}`` expansion, and ``kennel init``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from kennel.config._base import CONFIG_NAME, STATE_DIR
from kennel.config.project import KennelConfig, Project
from kennel.config.template import default_config_text
from kennel.errors import ConfigError, did_you_mean

_Model = TypeVar("_Model", bound=BaseModel)


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The config model that holds the key at ``loc`` (to suggest its real keys)."""
    model: Any = KennelConfig
    for part in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            if field is None:
                return None
            model = field.annotation
        else:  # a dict or list of models: the part is a key or an index
            model = next(
                (a for a in get_args(model) if isinstance(a, type) and issubclass(a, BaseModel)),
                None,
            )
        while get_args(model) and not (isinstance(model, type) and issubclass(model, BaseModel)):
            inner = [a for a in get_args(model) if a is not type(None)]
            models = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
            if models or len(inner) != 1 or get_origin(model) in (dict, list):
                break
            model = inner[0]
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _format_error(err: ValidationError, prefix: tuple[str, ...] = ()) -> str:
    first = err.errors()[0]
    loc = (*prefix, *first["loc"])
    key = ".".join(str(part) for part in loc) or "(top level)"
    extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    hint = ""
    if first["type"] == "extra_forbidden" and loc:
        model = _model_at(loc)
        if model is not None:
            hint = did_you_mean(str(loc[-1]), model.model_fields)
    elif first["type"] == "literal_error" and isinstance(first.get("input"), str):
        expected = re.findall(r"'([^']*)'", str((first.get("ctx") or {}).get("expected", "")))
        hint = did_you_mean(first["input"], expected)
    message = (
        "unknown key"
        if first["type"] == "extra_forbidden"
        else str(first["msg"]).removeprefix("Value error, ")
    )
    return f"{key}: {message}{hint}{extra}"


_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A kennel.yaml is a few hundred values, a dozen levels deep. YAML aliases let a small file
# stand for a huge one (each alias of an alias doubles it: "billion laughs"), and each level
# of nesting is a level of recursion here, in PyYAML and in validation: past these limits the
# file is refused with its reason instead of filling memory or the stack.
MAX_VALUES = 100_000
MAX_DEPTH = 64


def _expand(value: Any, key: str, budget: list[int] | None = None, depth: int = 0) -> Any:
    """Replace ``${NAME}`` in string values with environment variables (for secrets); every
    value visited (an alias's as often as it is used) counts against MAX_VALUES."""
    budget = [MAX_VALUES] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError(
            f"expands to more than {MAX_VALUES:,} values (YAML aliases repeating aliases?)"
        )
    if depth > MAX_DEPTH and isinstance(value, dict | list):
        raise ConfigError(f"{key}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        return {
            k: _expand(v, f"{key}.{k}" if key else str(k), budget, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_expand(v, f"{key}[{i}]", budget, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{key}: environment variable {name} is not set")
            return os.environ[name]

        return _ENV_VAR.sub(lookup, value)
    return value


def revalidate(section: str, value: _Model, updates: dict[str, Any]) -> _Model:
    """One kennel.yaml section with a command's ``updates`` (e.g. ``train`` with --arch),
    validated like the file: a bad or unknown key is a ConfigError naming it."""
    try:
        return type(value).model_validate({**value.model_dump(), **updates})
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, (section,))) from exc


def parse_config(data: Any, *, source: str = CONFIG_NAME) -> KennelConfig:
    if data is None:
        data = {}
    try:
        data = _expand(data, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return KennelConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_format_error(exc)}") from exc


def load_project(root: Path | str | None = None) -> Project:
    """Load ``kennel.yaml`` from ``root`` (default: the current directory)."""
    base = Path(root if root is not None else Path.cwd()).resolve()
    path = base / CONFIG_NAME
    if base.is_file():
        raise ConfigError(f"{base} is a file; -C takes the project's folder (with {CONFIG_NAME})")
    if not path.is_file():
        raise ConfigError(f"no {CONFIG_NAME} in {base}; run `kennel init` there first")
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=_UniqueKeys)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"{path}{where}: not valid YAML: {what}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    except RecursionError:  # PyYAML composes and builds nested collections recursively
        raise ConfigError(f"{path}: nested too deeply (at most {MAX_DEPTH} levels)") from None
    if data is None:
        raise ConfigError(f"{path}: empty; `kennel init --force {base}` writes the default one")
    return Project(root=base, config=parse_config(data, source=str(path)))


_MERGE = object()


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (the last would win
    silently, and the first is often the one the user edited). Each mapping is checked as
    written, once, before YAML flattens its merge keys (``<<: *base``) into it: merged keys
    may be set again, and a mapping used as a merge source is flattened before it is built."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._checked: set[int] = set()

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        if id(node) not in self._checked:
            self._checked.add(id(node))
            self._written_once(node)
        super().flatten_mapping(node)

    def _written_once(self, node: yaml.MappingNode) -> None:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                key: Any = _MERGE  # not the text "<<", which a quoted key may be
            elif key_node.tag == "tag:yaml.org,2002:value":
                key = "="  # what YAML makes of it once flattened
            else:
                key = self.construct_object(key_node)
            try:
                again = key in seen
            except TypeError:  # unhashable: the base loader names it, as YAML does
                return
            if again:
                shown = "<<" if key is _MERGE else key
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {shown!r} appears twice in one section", key_node.start_mark
                )
            seen.add(key)


def init_project(root: Path | str, *, force: bool = False) -> tuple[Project, bool]:
    """Write kennel.yaml and .kennel/ under ``root``; returns (project, created)."""
    base = Path(root).resolve()
    base.mkdir(parents=True, exist_ok=True)
    path = base / CONFIG_NAME
    created = force or not path.exists()
    if created:
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(default_config_text(), encoding="utf-8")
        tmp.replace(path)
    (base / STATE_DIR).mkdir(exist_ok=True)
    return load_project(base), created
