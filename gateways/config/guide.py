"""What the set-up page says around each snippet: the seed guides' steps, as data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateways.config.snippets import rc_place
from gateways.rules import CREDENTIAL_VARIABLE, AuthScheme

if TYPE_CHECKING:
    from gateways.models import Gateway

INSTALL_UNIX = [
    ("Native installer (recommended)", "curl -fsSL https://claude.ai/install.sh | bash"),
    ("Homebrew (macOS)", "brew install --cask claude-code"),
    ("npm fallback (Node.js 18+)", "npm install -g @anthropic-ai/claude-code"),
]
INSTALL_WINDOWS = [
    ("Native installer (recommended, PowerShell)", "irm https://claude.ai/install.ps1 | iex"),
    ("WinGet", "winget install Anthropic.ClaudeCode"),
    ("npm fallback (Node.js 18+)", "npm install -g @anthropic-ai/claude-code"),
]


@dataclass(frozen=True)
class Tab:
    slug: str
    title: str
    format: str
    platform: str  # "unix" or "windows"
    where: str
    apply: str
    installers: tuple[str, ...] = ()

    @property
    def install_steps(self) -> list[tuple[str, str]]:
        return INSTALL_WINDOWS if self.platform == "windows" else INSTALL_UNIX

    @property
    def installer_links(self) -> list[tuple[str, str]]:
        """Each installer the tab offers, with the systems it runs on when the tab offers more than one (the
        settings.json tab speaks to every system, and a Windows reader must not be handed install.sh alone)."""
        several = len(self.installers) > 1
        return [(name, INSTALLER_SYSTEMS[name] if several else "") for name in self.installers]


INSTALLER_SYSTEMS = {"install.sh": "macOS, Linux", "install.ps1": "Windows"}


TABS = [
    Tab(
        "zsh",
        "macOS/Linux zsh",
        "zsh",
        "unix",
        rc_place("~/.zshrc"),
        "source ~/.zshrc, or open a new terminal",
        ("install.sh",),
    ),
    Tab(
        "bash",
        "bash",
        "bash",
        "unix",
        rc_place("~/.bashrc"),
        "source ~/.bashrc, or open a new terminal",
        ("install.sh",),
    ),
    Tab("fish", "fish", "fish", "unix", rc_place("~/.config/fish/config.fish"), "open a new terminal", ("install.sh",)),
    Tab(
        "powershell",
        "Windows PowerShell",
        "powershell",
        "windows",
        "Paste into PowerShell: it saves the variables in your user environment with "
        "[Environment]::SetEnvironmentVariable (the CMD tab has the setx form) and sets them in this window",
        "close this terminal and open a new PowerShell window",
        ("install.ps1",),
    ),
    Tab(
        "cmd",
        "Windows CMD",
        "cmd",
        "windows",
        "Paste into CMD: setx saves the variables in your user environment",
        "close this terminal and open a new CMD window",
        ("install.ps1",),
    ),
    Tab(
        "settings",
        "settings.json",
        "settings.json",
        "any",
        "Saving this as ~/.claude/settings.json (Windows: %USERPROFILE%\\.claude\\settings.json) replaces "
        "the file you have, with every other setting in it: if you have one, use an installer below (install.sh on "
        "macOS and Linux, install.ps1 on Windows), which "
        "merges and keeps a backup. For one project, save it as .claude/settings.local.json (never in "
        ".claude/settings.json, which is committed with the repository): it sets every variable the portal "
        'manages and every model-id setting, those this gateway does not use to "", so no model id, header or '
        "timeout of another set-up comes through",
        "restart claude: settings are read at start-up",
        ("install.sh", "install.ps1"),
    ),
]


def tab_for_user_agent(user_agent: str) -> str:
    """Preselect a tab: Windows browsers get PowerShell, macOS zsh (its default shell), others bash."""
    ua = user_agent.lower()
    if "windows" in ua:
        return "powershell"
    if "mac os" in ua or "macintosh" in ua:
        return "zsh"
    return "bash"


def platform_for_user_agent(user_agent: str) -> str:
    """Preselect the system of a new device (gateways.models.Platform) from the browser's."""
    ua = user_agent.lower()
    if "windows" in ua:
        return "windows"
    if "mac os" in ua or "macintosh" in ua:
        return "macos"
    return "linux"


def after_setup_steps(gateway: Gateway) -> list[str]:
    """The steps after the snippet, in the order of the gateway's guide."""
    steps = ["Close the terminal and open a new one: variables are only read by a new terminal."]
    installer_did = (
        "install.sh and install.ps1 also answer Claude Code's first-run questions in ~/.claude.json: they mark "
        'its onboarding done (otherwise it first contacts api.anthropic.com and stops at "Unable to connect to '
        'Anthropic services" where that host cannot be reached)'
    )
    if gateway.auth_scheme == AuthScheme.BEARER:
        steps.append(installer_did + ".")
        steps.append(
            "If you ever signed in to Claude Code with an Anthropic account, run /logout once inside claude, "
            "then quit and start claude again: a cached login conflicts with the gateway key."
        )
    else:
        steps.append(
            installer_did + " and approve the key. With a snippet or settings.json instead, Claude Code asks "
            '"Detected a custom API key… Do you want to use this API key?" on the first start. '
            "Answer Yes: the default answer is No."
        )
    steps.append(
        "Run claude in your project folder. The first time in a folder it asks whether you trust it, with "
        '"No, exit" preselected: choose "Yes, I trust this folder". The installers leave this question to you.'
    )
    if not gateway.default_model:
        # Before the prompt, as the guides do: without a model Claude Code asks for its own default id,
        # which the gateway may not serve ("There's an issue with the selected model").
        steps.append("Choose a model with /model inside claude, before the first prompt.")
    steps.append(
        'Send a short prompt, for example: Reply with "connected". '
        f"A normal answer means the path to {gateway.name} works."
    )
    # A scheme saved around the rules has no variable: the step then names none rather than fail the page.
    source = CREDENTIAL_VARIABLE.get(gateway.auth_scheme, "the key's variable")
    steps.append(
        f"Run /status inside claude: the base URL should read {gateway.base_url} and the auth source {source}."
    )
    return steps


GENERAL_TROUBLESHOOTING = [
    (
        "401 or 403",
        "Check that the key is the full secret (with its sk- prefix), that it is not disabled, expired or out "
        "of balance, that your model is allowed for the key, and that no IP restriction blocks you.",
    ),
    (
        '400 context_management: Extra inputs are not permitted (under "Unable to connect to Anthropic services")',
        "The key is fine: the gateway rejects Claude Code's experimental betas. Add "
        '"CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS": "1" to the env block of ~/.claude/settings.json, open a '
        "new terminal and run claude again. Ask your team admin to probe the key: the portal then adds it for you.",
    ),
    (
        'Model not found, or "There\'s an issue with the selected model"',
        "Check the base URL has no /v1 at the end, that ANTHROPIC_API_KEY is empty when the gateway uses "
        "ANTHROPIC_AUTH_TOKEN, and that the model id is spelled the gateway's way.",
    ),
    (
        "Changes do not take effect",
        "Variables are read only by a new terminal, and settings.json only when claude starts: reopen both.",
    ),
]
# Words that name the problem each general entry above covers (same order): a gateway whose own
# troubleshooting already names it says it in its own words, so the general entry is left out.
GENERAL_TOPICS = (("401", "403"), ("context_management",), ("model not found", "selected model"), ("take effect",))


def troubleshooting_for(gateway: Gateway) -> list[tuple[str, str]]:
    """The gateway's own troubleshooting (its {base_url} filled in), then each general entry it does not already
    cover: no problem twice."""
    own = [(symptom, fix) for symptom, fix in gateway.troubleshooting_rows]
    said = " ".join(symptom.lower() for symptom, _ in own)
    general = [
        entry
        for entry, words in zip(GENERAL_TROUBLESHOOTING, GENERAL_TOPICS, strict=True)
        if not any(word in said for word in words)
    ]
    return own + general
