"""The download formats of a configuration: one table shared by the web page and the API."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpResponse

from gateways.config import installers, snippets
from gateways.config.builder import ClaudeConfig, saved_as

# Also what the live-key install command asks for: see gateways.devices.SH_INSTALL_COMMAND.
SHELL_SCRIPT = "text/x-shellscript"
PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]{1,40}")


@dataclass(frozen=True)
class Format:
    name: str
    render: Callable[[ClaudeConfig], str]
    content_type: str
    # {team} and {gateway} are the slugs: a developer in two teams may hold a key on one gateway in each, and
    # the two files saved side by side must not take one name. Claude Code reads the settings files by name.
    filename: str


FORMATS: dict[str, Format] = {
    f.name: f
    for f in [
        Format("settings.json", snippets.render_settings_json, "application/json", "settings.json"),
        # The same content, named for one project's .claude/ folder (personal, never committed).
        Format("settings.local.json", snippets.render_settings_json, "application/json", "settings.local.json"),
        Format("bash", snippets.render_bash, SHELL_SCRIPT, "claude-{team}-{gateway}.bash"),
        Format("zsh", snippets.render_zsh, SHELL_SCRIPT, "claude-{team}-{gateway}.zsh"),
        Format("fish", snippets.render_fish, "text/plain", "claude-{team}-{gateway}.fish"),
        Format("powershell", snippets.render_powershell, "text/plain", "claude-{team}-{gateway}.ps1"),
        Format("cmd", snippets.render_cmd, "text/plain", "claude-{team}-{gateway}.cmd"),
        Format("install.sh", installers.render_install_sh, SHELL_SCRIPT, installers.INSTALL_SH_NAME),
        Format("install.ps1", installers.render_install_ps1, "text/plain", installers.INSTALL_PS1_NAME),
    ]
}


class UnknownFormat(LookupError):
    """A format name no renderer has; the sentence repeats the name only when it is plain.

    The refusal may be piped into sh (`curl … /{format} | sh`), where a `$(…)` or backtick in the
    name, repeated inside the JSON's double quotes, would run.
    """

    def __init__(self, name: str):
        shown = repr(name) if PLAIN_NAME.fullmatch(name) else "by that name"
        super().__init__(f"There is no format {shown}. Formats: {', '.join(FORMATS)}.")


def render(name: str, config: ClaudeConfig) -> tuple[str, Format]:
    """Render one format; raises UnknownFormat or snippets.UnrepresentableValue with a sentence."""
    fmt = FORMATS.get(name)
    if fmt is None:
        raise UnknownFormat(name)
    return fmt.render(config), fmt


def download_name(fmt: Format, *, team_slug: str, gateway_slug: str) -> str:
    """The name a download is saved under, e.g. claude-web-tokaify.bash."""
    return saved_as(fmt.filename, team_slug=team_slug, gateway_slug=gateway_slug)


def download_response(text: str, fmt: Format, *, team_slug: str, gateway_slug: str) -> HttpResponse:
    """A config as a file download; it holds a key, so no cache may keep it."""
    response = HttpResponse(text, content_type=f"{fmt.content_type}; charset=utf-8")
    name = download_name(fmt, team_slug=team_slug, gateway_slug=gateway_slug)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response
