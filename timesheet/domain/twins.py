"""The ``a``-prefixed async twins of the sync services, made one way."""

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async

P = ParamSpec("P")
R = TypeVar("R")


def async_twin(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Return an async function that runs ``function`` in Django's sync thread (where its transaction lives)."""
    run = sync_to_async(function)

    @functools.wraps(function)
    async def twin(*args: P.args, **kwargs: P.kwargs) -> R:
        return await run(*args, **kwargs)

    twin.__name__ = twin.__qualname__ = f"a{function.__name__}"
    twin.__doc__ = f"Async twin of :func:`{function.__name__}`."
    return twin
