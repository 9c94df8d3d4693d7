"""Decorators for function views, built on portal.permissions like the API's permission classes."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse

from portal.permissions import require_staff


def staff_required(denied: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Staff only: a 403 with `denied` for anyone else. Put it under @login_required."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            require_staff(request.user, denied)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
