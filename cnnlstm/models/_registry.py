"""A small strict registry: a dict plus a decorator that raises on duplicate names."""
from __future__ import annotations

import difflib
import fnmatch
from typing import Callable, Generic, TypeVar

F = TypeVar("F", bound=Callable)
DEFAULT_RECIPE = "default"  # models registered without a recipe train with TrainConfig's generic values


class Registry(Generic[F]):
    """Name -> builder (and its training recipe). Duplicate names raise; unknown names list the
    closest valid ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._builders: dict[str, F] = {}
        self._recipes: dict[str, str] = {}

    def register(self, fn: F, name: str | None = None, recipe: str = DEFAULT_RECIPE) -> F:
        name = name or fn.__name__
        if name in self._builders:
            raise ValueError(f"{self.kind} '{name}' is already registered; pick another name")
        self._builders[name] = fn
        self._recipes[name] = recipe
        return fn

    def recipe(self, name: str) -> str:
        """The name of the training recipe ``name`` trains with (``cnnlstm/configs/<recipe>.yaml``)."""
        self.get(name)  # unknown names raise with suggestions
        return self._recipes[name]

    def get(self, name: str) -> F:
        if name not in self._builders:
            close = difflib.get_close_matches(name, self._builders, n=3, cutoff=0.4)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(
                f"Unknown {self.kind} '{name}'.{hint} Available: {', '.join(self.names())}"
            )
        return self._builders[name]

    def names(self, pattern: str | None = None) -> list[str]:
        names = sorted(self._builders)
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._builders


MODELS: Registry = Registry("model")


def register_model(fn: F | None = None, *, recipe: str = DEFAULT_RECIPE):
    """Decorator: register a model builder under its function name.

    ``recipe`` names the training recipe of its family (``cnnlstm/configs/<recipe>.yaml``: lr,
    warmup, weight decay, dropout, clipping) that ``cnnlstm train`` applies unless the user sets
    those keys. Use bare (``@register_model``) or with a recipe (``@register_model(recipe="lstm")``).
    """
    if fn is None:
        return lambda f: MODELS.register(f, recipe=recipe)
    return MODELS.register(fn, recipe=recipe)


def model_recipe(name: str) -> str:
    """The recipe name of registered model ``name`` (``"default"`` when it was registered without one)."""
    return MODELS.recipe(name)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is a shell-style filter such as ``'*lstm*'``."""
    return MODELS.names(pattern)


def get_model_builder(name: str) -> Callable:
    """The builder registered as ``name``: its signature lists the model's options, its docstring says what it is."""
    return MODELS.get(name)


def create_model(name: str, **kwargs):
    """Build the registered model ``name``; keyword arguments go to its builder.

    Example: ``create_model("cnn_lstm", num_classes=10, backbone="resnet18", weights=None)``.
    """
    builder = MODELS.get(name)
    try:
        return builder(**kwargs)
    except TypeError as exc:
        if "argument" in str(exc) and builder.__name__ in str(exc):
            import inspect

            params = ", ".join(inspect.signature(builder).parameters)
            raise TypeError(f"create_model('{name}'): {exc}. Its arguments are: {params}") from exc
        raise
