"""DRF permission classes, built on portal.permissions like the pages' decorators."""

from __future__ import annotations

from rest_framework import permissions

from portal.permissions import require_staff


class StaffWritesOnly(permissions.BasePermission):
    """Anyone signed in reads; only staff write. The view's `staff_only` sentence says what is refused."""

    def has_permission(self, request, view) -> bool:
        if request.method not in permissions.SAFE_METHODS:
            require_staff(request.user, getattr(view, "staff_only", "Only staff can do this."))
        return True
