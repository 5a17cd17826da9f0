"""A cheaper ``__init__`` for frozen slotted dataclasses made on the hot path.

A frozen dataclass's generated ``__init__`` stores each field through ``object.__setattr__``
(its own ``__setattr__`` refuses): a lookup of that slot wrapper and a call that parses its
arguments, per field. :func:`quick_init` generates the same ``__init__`` (same parameters,
defaults and order) storing each field through its slot's member descriptor instead, about
twice as cheap per field. The class is otherwise untouched: still frozen (assignment raises
``FrozenInstanceError``), slotted, compared, hashed and printed as before.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["quick_init"]

T = TypeVar("T", bound=type[Any])


def quick_init(cls: T) -> T:
    """Replace the generated ``__init__`` of the frozen slotted dataclass ``cls``; return it.

    Raises:
        TypeError: ``cls`` is not a frozen slotted dataclass, or needs what this ``__init__``
            does not do (``__post_init__``, ``InitVar``, a field left out of ``__init__``).
    """
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        msg = f"{cls.__qualname__} is not a frozen slotted dataclass"
        raise TypeError(msg)
    if hasattr(cls, "__post_init__") or any(
        isinstance(f.type, dataclasses.InitVar) for f in dataclasses.fields(cls)
    ):
        msg = f"{cls.__qualname__} needs __post_init__ or an InitVar"
        raise TypeError(msg)
    namespace: dict[str, Any] = {}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for f in dataclasses.fields(cls):
        if not f.init or f.default_factory is not dataclasses.MISSING:
            msg = f"{cls.__qualname__}.{f.name}: no init or a default factory"
            raise TypeError(msg)
        param = f.name
        if f.default is not dataclasses.MISSING:
            namespace[f"_default_{f.name}"] = f.default
            param = f"{f.name}=_default_{f.name}"
        (keyword if f.kw_only else positional).append(param)
        namespace[f"_set_{f.name}"] = _member(cls, f.name).__set__
        body.append(f"    _set_{f.name}(self, {f.name})")
    signature = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    source = "\n".join([f"def __init__({signature}):", *body, "    return None"])
    exec(source, namespace)  # noqa: S102 - source built above from field names only
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    init.__annotations__ = dict(cls.__init__.__annotations__)  # the same signature, hints too
    cls.__init__ = init
    return cls


def _member(cls: type[Any], name: str) -> Any:
    """The slot descriptor of field ``name``, from the class that declares the slot."""
    for klass in cls.__mro__:
        if name in klass.__dict__.get("__slots__", ()):
            return klass.__dict__[name]
    msg = f"{cls.__qualname__}.{name} is not a slot"
    raise TypeError(msg)
