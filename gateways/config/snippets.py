"""Render a ClaudeConfig for one shell, exactly quoted, or refuse with a reason.

Every shell format is a script that works both pasted into that shell and sourced as a
file. Quoting is one function per shell; a value that a shell cannot carry unchanged raises
`UnrepresentableValue` instead of being mangled.

Each shell script first clears the variables it owns (CLEARED_ENV) that this set-up does not set:
the portal-managed ones, and the extra-env settings whose value is a model id (MODEL_EXTRA_ENV:
ANTHROPIC_SMALL_FAST_MODEL, CLAUDE_CODE_SUBAGENT_MODEL). So pasting gateway B's snippet after
gateway A's sends B nothing of A's that names a key, a header or a model: no stale
ANTHROPIC_AUTH_TOKEN sent as a second key, no model id spelled A's way when Claude Code starts a
subagent or a background task. The settings files (settings_env) and the installers own the same
names, "" where the set-up has no value, and install.sh lists the rc-file lines that set any of them.

The rest of a gateway's extra env is not cleared: a snippet cannot know what an older snippet
exported, the allow-list is prefixes, not a list to clear, and those names (telemetry, timeouts, flags)
may be a developer's own too. So the set-up page and each header ask to put the snippet in the rc file
in place of an earlier portal set-up's lines, not after them: bash, zsh and fish then keep nothing of
it, and a setting staff removed is gone from the next new terminal. PowerShell and CMD store the
variables for the user, so there it stays until removed under Environment Variables. The installers
do take it back (installers.EXTRA_ENV_RECORD).

A snippet cannot undo an installer or a hand-made settings.json, though: ~/.claude/settings.json's
env outranks exported variables for every name it sets (even set to ""), and its apiKeyHelper sends a
key of its own. So each shell script first looks into that file and, when it sets apiKeyHelper or any
variable a settings file of the portal owns (REPLACED_ENV), says on stderr that the installer is the way
to switch: by name only, never a value, and without failing.

The downloaded settings.json and settings.local.json carry the installers' env (settings_env): every
name in REPLACED_ENV, "" where the set-up has no value. Claude Code merges env name by name across the
user's file and a project's settings.local.json, so a project file that left a name out would send
another team's model ids or timeout to this gateway.
"""

from __future__ import annotations

import json
import re
import textwrap
import unicodedata
from collections.abc import Callable

from gateways.config.builder import SETTINGS_SCHEMA_URL, ClaudeConfig
from gateways.rules import ENV_NAME, MANAGED_ENV, MODEL_EXTRA_ENV, RuleError, UnrepresentableValue, check_env_name

SWITCH_NOTE = "Only one gateway set-up is active at a time: first clear what another portal set-up may have left."
# Kept as the developer left it, by installers and by the snippets' check: the portal's own troubleshooting
# tells developers to add it to settings.json, and it is harmless on any gateway.
KEPT_ENV = frozenset({"CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS"})
# What a snippet clears when its set-up does not set it: the managed names, and the extra-env settings that hold
# a model id, which another gateway spells its own way (staff give TokenBay claude-haiku-4.5 for subagents; on
# Tokaify that id fails whenever Claude Code starts one). A handful of names: the rest of extra env is left.
CLEARED_ENV = frozenset(MANAGED_ENV | MODEL_EXTRA_ENV)
# What a settings file of the portal owns in its env: each name is the set-up's value or "".
REPLACED_ENV = tuple(sorted(CLEARED_ENV - KEPT_ENV))
# What makes settings.json win over a snippet, searched for by content (JSON key names, with their quotes):
# its env outranks exported variables for every name it sets, so an old key goes out beside the snippet's
# (measured: a settings.json ANTHROPIC_API_KEY as x-api-key next to the Bearer token) and an old model id wins.
SETTINGS_WIN_NAMES = (
    "ANTHROPIC_BASE_URL",
    "apiKeyHelper",
    *(name for name in REPLACED_ENV if name != "ANTHROPIC_BASE_URL"),
)
SETTINGS_WIN_PATTERN = '"(' + "|".join(SETTINGS_WIN_NAMES) + ')"'


def settings_win_warning(installer: str) -> str:
    """What a snippet says, after the settings file's path, when that file would outrank it.

    No parenthesis, ampersand or percent sign: CMD echoes this inside an if ( ... ) block.
    """
    return (
        "sets ANTHROPIC_BASE_URL or apiKeyHelper or another variable the portal manages, such as a key or a "
        "model id, and Claude Code prefers that file to these variables: this snippet does not switch gateways. "
        f"Run this gateway's {installer} instead, which replaces them, or remove them from that file."
    )


def unused_cleared(config: ClaudeConfig) -> list[str]:
    """The variables a snippet owns (CLEARED_ENV) that this set-up does not set, which it clears first."""
    return sorted(CLEARED_ENV - set(config.env))


def settings_env(config: ClaudeConfig) -> dict[str, str]:
    """The env a settings file gets: the config's, then "" for every replaced name the config does not set.

    Claude Code merges env name by name across ~/.claude/settings.json and a project's settings.local.json,
    so a file that left a name out would let another set-up's model id (a subagent's included) or timeout
    through; "" is unset for Claude Code 2.1.330 (its default model, no extra header, the default timeout).
    """
    env = dict(config.env)
    for name in REPLACED_ENV:
        env.setdefault(name, "")
    return env


def _refuse_unsafe(name: str, value: str) -> None:
    """Refuse a name outside the allow-list (even one the database holds) and a NUL in a value.

    The name check is the defence against commands injected through a variable name: every
    renderer writes a name only after it, so `X=1; touch marker; Y` or PROMPT_COMMAND never
    reaches a shell line, a PowerShell or CMD script, or a settings.json. The sentence shows a
    refused name only when it is well formed (A-Z, 0-9, _): a refusal may be piped into a shell.
    """
    try:
        check_env_name(name)
    except RuleError:
        if isinstance(name, str) and ENV_NAME.match(name):
            what = f"{name}, which is not a Claude Code setting the portal hands out and could run code on your machine"
        else:
            what = "a variable whose name is not a valid environment variable name"
        raise UnrepresentableValue(
            f"This set-up cannot be written: the gateway sets {what}. Ask staff to correct the gateway."
        ) from None
    if "\x00" in value:
        raise UnrepresentableValue(f"{name} contains a NUL character, which no environment variable can hold.")


def _comment(text: str, limit: int = 120) -> str:
    """Text safe inside a comment line of any shell: printable ASCII only, no line breaks."""
    return re.sub(r"[^A-Za-z0-9 .,:;()/@+_'-]", "?", text.replace("…", "..."))[:limit]


def setup_comment(config: ClaudeConfig) -> str:
    """Which set-up a header is about, comment-safe: "Tokaify for team Web" (the gateway alone when no team is known).

    A developer may hold a key on one gateway in two teams; both names are typed by people, so each goes
    through _comment() on its own. A team name _comment() changes ("研发" reads "??", as "运维" does) is
    followed by the team's slug, which is ASCII and unique: "for team ?? (rd)".
    """
    gateway = _comment(config.gateway_name)
    if not config.team_name:
        return gateway
    team = _comment(config.team_name)
    if team != config.team_name.replace("…", "...") and config.team_slug:
        team = f"{team} ({_comment(config.team_slug)})"
    return f"{gateway} for team {team}"


def warning_comments(config: ClaudeConfig, comment: str) -> list[str]:
    """The config's warnings as comment lines of at most 100 characters."""
    lines = []
    for warning in config.warnings:
        lines += [f"{comment} {part}" for part in textwrap.wrap(f"Warning: {_comment(warning, 1000)}", 96)]
    return lines


def posix_quote(value: str) -> str:
    """Single-quote for bash and zsh: everything is literal except the quote itself."""
    return "'" + value.replace("'", "'\\''") + "'"


def fish_quote(value: str) -> str:
    """fish single quotes: only backslash and the quote are special inside them."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def powershell_quote(value: str) -> str:
    """A PowerShell expression that yields `value`, written in printable ASCII only.

    Printable ASCII goes in single quotes (a quote doubled); anything else becomes `[char]0xNNNN`,
    so the script means the same whatever code page a file is read in, and the typographic quotes
    that PowerShell also treats as quote characters never appear inside a quoted string.
    """
    parts: list[str] = []
    run = ""
    for ch in value:
        if " " <= ch <= "~":
            run += "''" if ch == "'" else ch
            continue
        if run:
            parts.append(f"'{run}'")
            run = ""
        code = ord(ch)
        parts.append(f"[char]0x{code:04X}" if code <= 0xFFFF else f"[char]::ConvertFromUtf32(0x{code:X})")
    if run or not parts:
        parts.append(f"'{run}'")
    if parts[0].startswith("["):
        parts.insert(0, "''")  # string + char concatenates; char + string would not
    return parts[0] if len(parts) == 1 else "(" + " + ".join(parts) + ")"


CMD_FORBIDDEN = {
    '"': "a double quote",
    "%": "a percent sign (CMD expands %NAME% differently when pasted and when run from a file)",
    "\n": "a line break",
    "\r": "a line break",
}
SETX_MAX_LENGTH = 1024


def cmd_check(name: str, value: str) -> None:
    for ch, what in CMD_FORBIDDEN.items():
        if ch in value:
            raise UnrepresentableValue(
                f"{name} contains {what}, which CMD cannot carry unchanged. Use the PowerShell or settings.json set-up."
            )
    if not value.isascii() or any(unicodedata.category(ch).startswith("C") for ch in value):
        raise UnrepresentableValue(
            f"{name} contains characters outside printable ASCII, which a CMD script cannot carry reliably. "
            "Use the PowerShell or settings.json set-up."
        )
    if len(value) > SETX_MAX_LENGTH:
        raise UnrepresentableValue(f"{name} is longer than the {SETX_MAX_LENGTH} characters setx can store.")


def cmd_setx_quote(value: str) -> str:
    """setx parses its arguments like a C program: backslashes before the closing quote double."""
    trailing = len(value) - len(value.rstrip("\\"))
    return '"' + value + "\\" * trailing + '"'


def _header(config: ClaudeConfig, comment: str, where: str) -> list[str]:
    return [
        f"{comment} Claude Code -> {setup_comment(config)} (key {_comment(config.key_label)}, {_comment(config.key_masked)})",
        f"{comment} {where}",
        f"{comment} This file contains your personal key: do not share it or commit it.",
        *warning_comments(config, comment),
    ]


def rc_place(rc_file: str) -> str:
    """Where a shell's snippet goes: in place of an earlier portal set-up's lines, since it clears only some of them.

    Appended after them, the other gateway's extra settings (a telemetry switch, a beta flag) would stay exported.
    """
    return f"Put these lines in {rc_file}, replacing any earlier portal set-up's lines"


def _hash_note(text: str) -> str:
    return f"# {text}"


def render_posix(config: ClaudeConfig, rc_file: str, note: Callable[[str], str] = _hash_note) -> str:
    """The exports for a POSIX shell's rc file; `note` writes each line of the notes above them."""
    header = _header(config, "#", f"{rc_place(rc_file)}, then open a new terminal (or run: source {rc_file}).")
    lines = [note(line.removeprefix("# ")) for line in header]
    # ${HOME-}: a shell with `set -u` (zsh NO_UNSET) and no HOME would stop here, and with `set -e` close itself.
    settings = '"${CLAUDE_CONFIG_DIR:-${HOME-}/.claude}"'
    lines.append(
        f"if grep -qsE {posix_quote(SETTINGS_WIN_PATTERN)} {settings}/settings.json; then "
        f"printf 'warning: %s/settings.json %s\\n' {settings} {posix_quote(settings_win_warning('install.sh'))} >&2; fi"
    )
    if unused := unused_cleared(config):
        # `builtin`: a function of the developer's named unset (a logging wrapper) must not stand in for it.
        lines += [note(SWITCH_NOTE), "builtin unset " + " ".join(unused)]
    for name, value in config.env.items():
        _refuse_unsafe(name, value)
        lines.append(f"export {name}={posix_quote(value)}")
    return "\n".join(lines) + "\n"


def render_bash(config: ClaudeConfig) -> str:
    return render_posix(config, "~/.bashrc")


def render_zsh(config: ClaudeConfig) -> str:
    """As bash's, but each note is a `:` command that does nothing, with its text quoted.

    zsh reads a `#` line typed or pasted at its prompt as a command (INTERACTIVE_COMMENTS is off unless
    set), so a pasted note ran its words and a key label with an apostrophe opened a quote that swallowed
    the exports. A `:` line is skipped alike when pasted and in ~/.zshrc.
    """
    return render_posix(config, "~/.zshrc", note=lambda text: f": {posix_quote(text)}")


def render_fish(config: ClaudeConfig) -> str:
    """fish lines that end with status 0 when they worked, sourced or pasted.

    A `set` that succeeds keeps the status before it, so the exports ended with the status of
    `set -e` on an unset variable, 4: `source file; and claude` skipped claude and a paste left
    `[4]` at the prompt. A variable is erased only while set (a `while` whose test fails returns 0),
    or a `true` starts from 0 when nothing is erased; a `set` that fails (a read-only variable)
    still sets its own status, which the successful ones after it keep.
    """
    lines = _header(config, "#", f"{rc_place('~/.config/fish/config.fish')}, then open a new terminal.")
    # begin/end keeps `set -l` inside; an `if` whose test fails ends with status 0.
    lines.append(
        "begin; set -l settings ~/.claude/settings.json; "
        'test -n "$CLAUDE_CONFIG_DIR"; and set settings $CLAUDE_CONFIG_DIR/settings.json; '
        f"if grep -qsE {fish_quote(SETTINGS_WIN_PATTERN)} $settings; "
        f"printf 'warning: %s %s\\n' $settings {fish_quote(settings_win_warning('install.sh'))} >&2; end; end"
    )
    if unused := unused_cleared(config):
        # `set -e` erases one scope: a universal of the same name (set -Ux) would show again once the global
        # goes, so every scope is erased; a `while` whose test fails ends with status 0 too.
        lines += [f"# {SWITCH_NOTE}", *(f"while set -q {name}; set -e {name}; or break; end" for name in unused)]
    else:
        lines.append("true  # start from status 0: a fish set that works keeps the status before it")
    for name, value in config.env.items():
        _refuse_unsafe(name, value)
        lines.append(f"set -gx {name} {fish_quote(value)}")
    return "\n".join(lines) + "\n"


def render_powershell(config: ClaudeConfig) -> str:
    lines = _header(
        config,
        "#",
        "Paste into PowerShell: it saves the variables for your user and sets them in this window. "
        "Open a new terminal afterwards.",
    )
    # & { }: its variable stays in the script block, not in the developer's session.
    lines += [
        "& {",
        "  $dir = if ($env:CLAUDE_CONFIG_DIR) { $env:CLAUDE_CONFIG_DIR } else { Join-Path $HOME '.claude' }",
        "  $settings = Join-Path $dir 'settings.json'",
        f"  $why = {powershell_quote(settings_win_warning('install.ps1'))}",
        "  if ((Test-Path -LiteralPath $settings) -and "
        f"(Select-String -LiteralPath $settings -Pattern {powershell_quote(SETTINGS_WIN_PATTERN)} -Quiet)) {{",
        '    Write-Warning "$settings $why"',
        "  }",
        "}",
    ]
    if unused := unused_cleared(config):
        names = ", ".join(f"'{name}'" for name in unused)
        lines += [
            f"# {SWITCH_NOTE}",
            f'foreach ($name in {names}) {{ Remove-Item "Env:$name" -ErrorAction SilentlyContinue; '
            "[Environment]::SetEnvironmentVariable($name, $null, 'User') }",
        ]
    for name, value in config.env.items():
        _refuse_unsafe(name, value)
        if value == "":
            lines += [
                f"# Windows cannot keep an empty variable (an empty value deletes it), so {name} is removed:",
                "# that is what Claude Code needs here, no leftover key to send.",
                f"Remove-Item Env:{name} -ErrorAction SilentlyContinue",
                f"[Environment]::SetEnvironmentVariable('{name}', $null, 'User')",
            ]
            continue
        quoted = powershell_quote(value)
        lines.append(f"$env:{name} = {quoted}")
        lines.append(f"[Environment]::SetEnvironmentVariable('{name}', {quoted}, 'User')")
    return "\r\n".join(lines) + "\r\n"


def render_cmd(config: ClaudeConfig) -> str:
    lines = [line.replace("#", "REM", 1) for line in _header(config, "#", "Paste into CMD, then open a new terminal.")]
    # findstr by name (a quote would need escaping). The echo text names no path: a ( ) & | < > ^ in an
    # expanded folder name would end the if block. An undefined %CLAUDE_CONFIG_DIR% stays literal when
    # pasted, but only in the branch that is not taken.
    found = " ".join(f'/C:"{name}"' for name in SETTINGS_WIN_NAMES)
    echo = f"echo warning: your Claude Code settings.json {settings_win_warning('install.ps1')} 1>&2"
    lines.append(
        f'if defined CLAUDE_CONFIG_DIR (findstr /L {found} "%CLAUDE_CONFIG_DIR%\\settings.json" >nul 2>&1 && {echo}) '
        f'else (findstr /L {found} "%USERPROFILE%\\.claude\\settings.json" >nul 2>&1 && {echo})'
    )
    if unused := unused_cleared(config):
        # One line per name: a FOR loop would need %N pasted but %%N in a file.
        lines.append(f"REM {SWITCH_NOTE}")
        lines += [f"reg delete HKCU\\Environment /v {name} /f >nul 2>&1 & set {name}=" for name in unused]
    for name, value in config.env.items():
        _refuse_unsafe(name, value)
        if value == "":
            lines += [
                f"REM CMD cannot store an empty variable with setx, so {name} is removed instead:",
                "REM that is what Claude Code needs here, no leftover key to send.",
                f"reg delete HKCU\\Environment /v {name} /f >nul 2>&1",
                f"set {name}=",
            ]
            continue
        cmd_check(name, value)
        lines.append(f"setx {name} {cmd_setx_quote(value)} >nul")
        lines.append(f'set "{name}={value}"')
    return "\r\n".join(lines) + "\r\n"


def render_settings_json(config: ClaudeConfig) -> str:
    """settings.json and settings.local.json: the installers' env, so the file alone decides every managed name."""
    env = settings_env(config)
    for name, value in env.items():
        _refuse_unsafe(name, value)
    document = {"$schema": SETTINGS_SCHEMA_URL, "env": env}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
