"""The layout's rules, checked on the source: dependencies flow one way, views never import views."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, absolute names only (`from x import y` counts as x and x.y)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", python_files("portal"), ids=lambda p: str(p.relative_to(ROOT)))
def test_portal_never_imports_gateways_or_the_project(path):
    """gateways builds on portal (teams, audit), and config wires both; never the other way round."""
    wrong = sorted(n for n in imported_modules(path) if n.split(".")[0] in ("gateways", "alerts", "config"))
    assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}"


@pytest.mark.parametrize("path", python_files("gateways"), ids=lambda p: str(p.relative_to(ROOT)))
def test_gateways_never_imports_the_project_package(path):
    """alerts builds on gateways (it hears of keys through gateways.events), never the other way round."""
    wrong = sorted(n for n in imported_modules(path) if n.split(".")[0] in ("alerts", "config"))
    assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}"


@pytest.mark.parametrize("path", python_files("alerts"), ids=lambda p: str(p.relative_to(ROOT)))
def test_alerts_never_imports_the_project_package(path):
    wrong = sorted(n for n in imported_modules(path) if n.split(".")[0] == "config")
    assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}"


VIEW_MODULES = [p for app in ("portal", "gateways", "alerts") for p in python_files(app) if p.name == "views.py"]


@pytest.mark.parametrize("path", VIEW_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_views_call_services_and_selectors_never_other_views(path):
    """Pages and API share services, selectors and exports; neither imports the other's views."""
    ours = (n for n in imported_modules(path) if n.split(".")[0] in ("portal", "gateways", "alerts", "config"))
    wrong = sorted(n for n in ours if n.endswith(".views") or ".views." in n)
    assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}"


def test_the_checks_above_see_the_modules_they_guard():
    assert {p.relative_to(ROOT).as_posix() for p in VIEW_MODULES} == {
        "portal/views.py",
        "portal/api/views.py",
        "gateways/views.py",
        "gateways/api/views.py",
        "alerts/views.py",
        "alerts/api/views.py",
    }
    assert "gateways.models" in imported_modules(ROOT / "gateways/views.py")


ROLE_CHECKS = {"is_staff", "administered_by", "overseen_by", "with_role", "manageable_by", "role_of"}


@pytest.mark.parametrize("path", VIEW_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_views_check_roles_and_staff_only_through_the_permission_helpers(path):
    """One way to ask "may this user act": portal.permissions (and its decorator and DRF class)."""
    tree = ast.parse(path.read_text())
    wrong = sorted({n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr in ROLE_CHECKS})
    assert not wrong, f"{path.relative_to(ROOT)} checks {wrong} itself"
