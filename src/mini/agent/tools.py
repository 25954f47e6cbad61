"""Python functions as tools: a JSON Schema from type hints, sync functions run in a worker thread."""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mini.errors import InvalidInputError
from mini.llms.base import Tool

_PRIMITIVES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def schema_for(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of a type hint: primitives, list/tuple/set, dict, Literal, Enum, Optional/unions."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    if annotation in _PRIMITIVES:
        return {"type": _PRIMITIVES[annotation]}
    if annotation is type(None):
        return {"type": "null"}
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return {"enum": [member.value for member in annotation]}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set):
        item = schema_for(args[0]) if args else {}
        return {"type": "array", "items": item} if item else {"type": "array"}
    if origin is dict or annotation is dict:
        return {"type": "object"}
    if origin in (typing.Union, types.UnionType):
        options = [schema_for(a) for a in args]
        non_null = [o for o in options if o != {"type": "null"}]
        if len(non_null) == 1 and len(options) == 2:
            return non_null[0]  # Optional[X]: the parameter may be omitted; null adds nothing for the model
        return {"anyOf": options}
    if hasattr(annotation, "model_json_schema"):  # a pydantic model
        schema: dict[str, Any] = annotation.model_json_schema()
        return schema
    raise InvalidInputError(f"cannot describe {annotation!r} as a JSON Schema for a tool parameter")


@dataclass(frozen=True)
class FunctionTool:
    """A callable the agent may call. `spec` is what the model sees; `call` runs it with parsed arguments."""

    spec: Tool
    function: Callable[..., Any]
    required: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    async def call(self, arguments: Mapping[str, Any]) -> str:
        """Run the function; its result as text for the model (JSON for non-strings)."""
        if "_raw" in arguments:
            raise InvalidInputError(f"the arguments were not valid JSON: {arguments['_raw']!r:.200}")
        missing = [name for name in self.required if name not in arguments]
        if missing:
            raise InvalidInputError(f"missing required argument(s): {', '.join(missing)}")
        accepted = self.spec.parameters.get("properties", {})
        unknown = [name for name in arguments if name not in accepted]
        if unknown:
            raise InvalidInputError(f"unknown argument(s): {', '.join(unknown)}")
        if inspect.iscoroutinefunction(self.function):
            result = await self.function(**arguments)
        else:
            # A sync tool may block (HTTP, disk, CPU): never on the event loop.
            result = await asyncio.to_thread(self.function, **arguments)
            if inspect.isawaitable(result):
                result = await typing.cast(Awaitable[Any], result)
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)


def function_tool(
    function: Callable[..., Any] | FunctionTool, *, name: str | None = None, description: str | None = None
) -> FunctionTool:
    """Describe `function` for the model: its name, its docstring's first paragraph, its parameters' types.

    Parameters without a default are required. `*args`/`**kwargs` are not allowed (the model needs names).
    """
    if isinstance(function, FunctionTool):
        return function
    signature = inspect.signature(function)
    try:
        hints = typing.get_type_hints(function)
    except NameError as exc:  # a hint naming a class defined inside a function, under postponed annotations
        raise InvalidInputError(
            f"tool {getattr(function, '__name__', function)!r}: cannot resolve a type hint ({exc}); "
            "define the types its parameters use at module level"
        ) from exc
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise InvalidInputError(
                f"tool {function.__name__!r}: *args/**kwargs cannot be described to a model"
            )
        properties[param.name] = schema_for(hints.get(param.name, param.annotation))
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
        elif param.default is not None:
            properties[param.name]["default"] = param.default
    doc = inspect.getdoc(function) or ""
    summary = (
        description or doc.split("\n\n", 1)[0].replace("\n", " ").strip() or f"Call {function.__name__}."
    )
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    spec = Tool(name=name or function.__name__, description=summary, parameters=parameters)
    return FunctionTool(spec, function, tuple(required))
