"""Live-key installers and helpers: the device fetches its key from the portal when Claude Code asks.

Pure: a LiveSetup in, script text out. The installer (sh for macOS and Linux, PowerShell for
Windows) writes the helper and the device token into ~/.claude/ (private), and merges into
~/.claude/settings.json with the static installer's merge code (installers.MERGE_PY / MERGE_JS):
`apiKeyHelper` pointing at the helper, the gateway's non-secret env, and ANTHROPIC_API_KEY and
ANTHROPIC_AUTH_TOKEN set to "" so stale shell exports cannot outrank the helper (like every other
managed name the gateway does not set: snippets.settings_env). The secret
itself never touches the disk: the helper prints it to Claude Code and nothing else.

The helper carries the portal's address itself (Claude Code does not pass settings.json's env
to it, anthropics/claude-code#26999), uses curl, else wget, else python3 (Invoke-RestMethod on
Windows), never puts the device token on a command line, and on failure exits 1 with one line
that Claude Code shows ("apiKeyHelper failed: exited 1: <line>").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from gateways.config.builder import SETTINGS_SCHEMA_URL, ClaudeConfig, build_config
from gateways.config.formats import SHELL_SCRIPT
from gateways.config.installers import (
    EXTRA_ENV_RECORD,
    HELPER_PS1,
    HELPER_SH,
    MERGE_JS,
    MERGE_PY,
    PS1_HELPER_COMMAND,
    SH_HELPER_COMMAND,
    _b64json,
    _ps_list,
    extra_env_names,
    next_step,
)
from gateways.config.snippets import (
    KEPT_ENV,
    REPLACED_ENV,
    _comment,
    _refuse_unsafe,
    posix_quote,
    powershell_quote,
    settings_env,
    setup_comment,
)
from gateways.rules import Platform, one_line
from portal.crypto import Secret, reveal

if TYPE_CHECKING:
    from gateways.models import Gateway, GatewayKey

# HELPER_SH, HELPER_PS1 and their apiKeyHelper commands live in installers: a static installer removes them.
TOKEN_FILE = "portal-device-token"
BLANKED = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
# The helper's lines that name its device: an installer that finds another device's helper where it writes
# its own says which device it replaced (HELPER_REPLACED), since that device's token is then gone from the
# machine while the portal still counts it as live. The id is a fingerprint of the device's token (one token
# per device, never shown): names repeat, and a helper written before the id line has none.
HELPER_NAME_LINE = "# (apiKeyHelper). Written by the portal's installer for the device {name}."
HELPER_ID_LINE = (
    "# Device id: {device_id} (a fingerprint of its token, which tells one device's helper from another's)."
)
SED_DEVICE_ID = r"s/^# Device id: \([0-9a-f]*\) .*/\1/p"  # the id from HELPER_ID_LINE
HELPER_REPLACED = (
    "replaced the key helper of device {name}, from an earlier set-up on this machine: its token is gone from "
    "here. Remove that device under My devices in the portal, so it no longer counts as live."
)
UNNAMED_DEVICE = "(unnamed)"
# What a live installer that stops on the machine says to do next. Its link was used when the script was served
# and works once (running the same line again is refused), so, unlike a static installer, it sends the developer
# to a new install command.
NEW_INSTALL_COMMAND = (
    "make a new install command under Install on a new device on My set-up in {portal}: this one worked once."
)
AFTER_REFUSAL = "Nothing was changed; fix or move the file, then " + NEW_INSTALL_COMMAND
DEVICE_NEXT_STEP = (
    "Next: open a new terminal, run claude, {model}and send a short prompt. "
    "A rotated key reaches this device by itself."
)


@dataclass(frozen=True)
class LiveSetup:
    """What a device's installer needs; `token` is the device's credential, so never log one."""

    portal_name: str
    key_url: str
    device_name: str
    platform: str
    config: ClaudeConfig  # built without the secret: see live_config()
    token: str

    def __repr__(self) -> str:  # keeps the token out of tracebacks and debug output
        return f"LiveSetup(device={self.device_name!r}, gateway={self.config.gateway_slug!r})"


def live_config(gateway: Gateway, key: GatewayKey) -> ClaudeConfig:
    """The gateway's set-up without any secret, both credential variables blanked for the helper to win."""
    config = build_config(gateway, key, Secret(""))
    variables: dict[str, str | Secret] = dict(config.env)
    for name in BLANKED:
        variables[name] = ""
    for name, value in variables.items():
        _refuse_unsafe(name, reveal(value))
    return replace(config, variables=variables)


def helper_device_id(setup: LiveSetup) -> str:
    """The id in the helper's comment: the device's own, and no clue to its token."""
    return hashlib.sha256(setup.token.encode()).hexdigest()[:16]


def _helper_comment(setup: LiveSetup) -> str:
    """The helper's lines naming its device, as the installers read them back."""
    name = HELPER_NAME_LINE.format(name=_comment(setup.device_name))
    return name + "\n" + HELPER_ID_LINE.format(device_id=helper_device_id(setup)) + "\n"


def _sed_name_script() -> str:
    """A sed script printing the device name from HELPER_NAME_LINE (a basic regular expression)."""
    before, after = (re.sub(r"([.\[\]*^$\\/])", r"\\\1", part) for part in HELPER_NAME_LINE.split("{name}"))
    return f"s/^{before}\\(.*\\){after}$/\\1/p"


def _ps_name_pattern() -> str:
    """The same for PowerShell's -match (.NET), a file written with Windows line ends included."""
    before, after = (re.escape(part) for part in HELPER_NAME_LINE.split("{name}"))
    return f"(?m)^{before}(.*){after}\\r?$"


def _replaced_parts(quote: Callable[[str], str], name: str, join: str) -> str:
    """HELPER_REPLACED around `name`, the script's variable holding the replaced device's name."""
    before, after = HELPER_REPLACED.split("{name}")
    return join.join([quote(before), name, quote(after)])


def _line(text: str) -> str:
    """Text for a sentence the scripts print: one line, no control characters."""
    return one_line(text)[:200]


def after_refusal(setup: LiveSetup, sentence: str = AFTER_REFUSAL) -> str:
    """What the installer says after a refusal on the machine: a new install command, since this one worked once."""
    return sentence.format(portal=_line(setup.portal_name))


def render_helper_sh(setup: LiveSetup) -> str:
    """The helper Claude Code runs (apiKeyHelper): prints the secret, or exits 1 with one line."""
    portal = posix_quote(_line(setup.portal_name))
    return f"""#!/bin/sh
# Prints this device's Claude Code key, fetched from {_comment(setup.portal_name)} each time Claude Code asks
{_helper_comment(setup)}# The device token beside it is private: it can fetch this one key and do nothing else.
portal={portal}
url={posix_quote(setup.key_url)}
nl='
'
fail() {{ printf '%s\\n' "$1" >&2; exit 1; }}
case "$0" in */*) dir=${{0%/*}} ;; *) dir=. ;; esac
token_file="$dir/{TOKEN_FILE}"
[ -r "$token_file" ] || fail "The device token $token_file is missing; run the install command again from My set-up in $portal."
# The token file is a wget start-up file (header = Authorization: Bearer ...), so wget reads it as it is.
token=$(sed -n 's/^header = Authorization: Bearer //p' "$token_file")
[ -n "$token" ] || fail "The device token $token_file is damaged; run the install command again from My set-up in $portal."
agent="portal-key-helper/1"
# Claude Code tells the programs it runs who it is (AI_AGENT=claude-code_2-1-330_...): the portal shows the version.
case "${{AI_AGENT:-}}" in
  claude-code_*)
    version=${{AI_AGENT#claude-code_}}
    version=${{version%%_*}}
    case "$version" in *[!0-9-]* | '') ;; *) agent="$agent claude-cli/$(printf '%s' "$version" | tr - .)" ;; esac
    ;;
esac
status=000
if command -v curl >/dev/null 2>&1; then
  # The header goes in on stdin: a command line is visible to every user of the machine.
  out=$(printf 'Authorization: Bearer %s\\n' "$token" | curl -sS -H @- -H 'Accept: text/plain' -A "$agent" \\
    --connect-timeout 10 --max-time 30 -w "$nl%{{http_code}}" "$url" 2>/dev/null) || true
  status=${{out##*"$nl"}}
  body=${{out%"$nl"*}}
elif command -v wget >/dev/null 2>&1; then
  code=0
  body=$(wget -q -O - --content-on-error --config="$token_file" --header='Accept: text/plain' -U "$agent" \\
    --tries=1 --timeout=30 --max-redirect=0 "$url" 2>/dev/null) || code=$?
  # 8: the portal answered an error, with its sentence; 6: a 401, whose body wget does not print.
  case "$code" in 0) status=200 ;; 8) status=error ;; 6) status=401 body="$portal does not know this device's token; run the install command again from My set-up." ;; esac
elif command -v python3 >/dev/null 2>&1; then
  # The body, then the status on a line of its own, as curl's -w writes them.
  out=$(PORTAL_TOKEN="$token" python3 -c '
import os, sys, urllib.error, urllib.request
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None
request = urllib.request.Request(sys.argv[1], headers={{
    "Authorization": "Bearer " + os.environ["PORTAL_TOKEN"], "Accept": "text/plain", "User-Agent": sys.argv[2]}})
try:
    with urllib.request.build_opener(NoRedirect).open(request, timeout=30) as response:
        sys.stdout.write(response.read().decode("utf-8", "replace") + "\\n%d" % response.status)
except urllib.error.HTTPError as error:
    sys.stdout.write(error.read().decode("utf-8", "replace") + "\\n%d" % error.code)
except Exception:
    sys.stdout.write("\\n000")
' "$url" "$agent" 2>/dev/null) || true
  status=${{out##*"$nl"}}
  body=${{out%"$nl"*}}
else
  fail "This helper needs curl, wget or python3 to reach $portal, and none of them was found."
fi
case "$status" in
  200)
    [ -n "$body" ] || fail "$portal at $url answered with an empty key."
    printf '%s\\n' "$body"
    exit 0
    ;;
  000) fail "cannot reach $portal at $url" ;;
esac
# The portal's refusal is one sentence of plain text; anything else is a proxy's or server's page, which
# for a 5xx is an outage on that side, not a refused key.
line=${{body%%"$nl"*}}
case "$line" in
  '' | '<'* | '{{'*)
    case "$status" in
      5??) fail "$portal at $url is not answering properly (HTTP $status); try again in a minute." ;;
      error) fail "$portal at $url answered with an error page instead of the key; if it goes on, tell its admins." ;;
      *) fail "$portal at $url refused the key (HTTP $status)." ;;
    esac
    ;;
  *) fail "$(printf '%.300s' "$line")" ;;
esac
"""


def render_helper_ps1(setup: LiveSetup) -> str:
    """The Windows helper: Invoke-RestMethod, the secret on stdout, or one line on stderr and exit 1."""
    return f"""# Prints this device's Claude Code key, fetched from {_comment(setup.portal_name)} each time Claude Code asks
{_helper_comment(setup)}# The device token beside it is private: it can fetch this one key and do nothing else.
$ErrorActionPreference = 'Stop'
$portal = {powershell_quote(_line(setup.portal_name))}
$url = {powershell_quote(setup.key_url)}
function Fail([string]$line) {{ [Console]::Error.WriteLine($line); exit 1 }}
$tokenFile = Join-Path $PSScriptRoot '{TOKEN_FILE}'
if (-not (Test-Path -LiteralPath $tokenFile)) {{
  Fail "The device token $tokenFile is missing; run the install command again from My set-up in $portal."
}}
$token = ([System.IO.File]::ReadAllText($tokenFile)).Trim()
$agent = 'portal-key-helper/1 (windows)'
if ($env:AI_AGENT -match '^claude-code_(\\d+)-(\\d+)-(\\d+)') {{
  $agent += " claude-cli/$($Matches[1]).$($Matches[2]).$($Matches[3])"
}}
try {{
  $key = Invoke-RestMethod -Uri $url -Headers @{{ Authorization = "Bearer $token"; Accept = 'text/plain' }} `
    -UserAgent $agent -TimeoutSec 30 -MaximumRedirection 0
}} catch {{
  if ($_.Exception.Response) {{
    $line = "$($_.ErrorDetails.Message)".Split("`n")[0].Trim()
    if (-not $line -or $line.StartsWith('<') -or $line.StartsWith('{{')) {{
      $status = [int]$_.Exception.Response.StatusCode
      $line = if ($status -ge 500) {{ "$portal at $url is not answering properly (HTTP $status); try again in a minute." }} `
        else {{ "$portal at $url refused the key (HTTP $status)." }}
    }}
    Fail $line
  }}
  Fail "cannot reach $portal at $url"
}}
if (-not "$key".Trim()) {{ Fail "$portal at $url answered with an empty key." }}
[Console]::Out.WriteLine("$key".Trim())
"""


def _token_file_text(setup: LiveSetup) -> str:
    return (
        f"# Claude Code device token for {_comment(setup.portal_name)}: private, do not share.\n"
        f"header = Authorization: Bearer {setup.token}\n"
    )


def render_device_install_sh(setup: LiveSetup) -> str:
    """The installer the install command pipes into sh: helper, token, settings.json, ~/.claude.json."""
    config = setup.config
    helper = render_helper_sh(setup)
    if HELPER_END in helper:
        raise ValueError("the helper text cannot contain its own here-document end marker")
    return f"""#!/bin/sh
# Claude Code -> {setup_comment(config)} with a live key from {_comment(setup.portal_name)} (device {_comment(setup.device_name)})
# Writes a helper and this device's token into ~/.claude/ (private), points apiKeyHelper at the helper in
# ~/.claude/settings.json (keeping everything else, with a backup), and marks Claude Code's first run done
# in ~/.claude.json. The key itself is never written: the helper fetches it each time Claude Code asks.
# This script holds the device's token: run it once (curl ... | sh), do not share it.
set -eu
umask 077

PORTAL_ENV='{_b64json(settings_env(config))}'
PORTAL_MANAGED='{_b64json(REPLACED_ENV)}'
PORTAL_SCHEMA='{SETTINGS_SCHEMA_URL}'
PORTAL_TOP='{_b64json({"apiKeyHelper": SH_HELPER_COMMAND})}'
PORTAL_APPROVE='{_b64json(None)}'
PORTAL_AFTER_REFUSAL='{_b64json(after_refusal(setup))}'
export PORTAL_ENV PORTAL_MANAGED PORTAL_SCHEMA PORTAL_TOP PORTAL_APPROVE PORTAL_AFTER_REFUSAL

settings_dir="${{CLAUDE_CONFIG_DIR:-$HOME/.claude}}"
settings="$settings_dir/settings.json"
# Claude Code keeps its state in ~/.claude.json, or in $CLAUDE_CONFIG_DIR when that is set.
state="${{CLAUDE_CONFIG_DIR:-$HOME}}/.claude.json"
stamp="$(date +%Y%m%d%H%M%S).$$"
helper="$settings_dir/{HELPER_SH}"
token_file="$settings_dir/{TOKEN_FILE}"

if command -v python3 >/dev/null 2>&1; then
  merge() {{ python3 -c {posix_quote(MERGE_PY)} "$@"; }}
elif command -v node >/dev/null 2>&1; then
  merge() {{ node -e {posix_quote(MERGE_JS)} "$@"; }}
else
  echo "error: this installer needs python3 or node to edit ~/.claude/settings.json safely, and neither was found." >&2
  printf '%s\n' {posix_quote("Nothing was changed; install one, then " + after_refusal(setup, NEW_INSTALL_COMMAND))} >&2
  exit 4
fi

# Private when this installer makes it (umask 077); a folder the developer made keeps the mode they gave it.
[ -d "$settings_dir" ] || mkdir -p "$settings_dir"
for file in "$helper" "$token_file"; do
  if [ -d "$file" ]; then
    printf 'error: %s is a folder, not a file. %s\n' "$file" {posix_quote(after_refusal(setup))} >&2
    exit 3
  fi
done
# Another device's helper here (another team's set-up, or an earlier install) loses its token now: say which.
replaced=
if [ -f "$helper" ] && ! [ "$(sed -n {posix_quote(SED_DEVICE_ID)} "$helper")" = '{helper_device_id(setup)}' ]; then
  replaced=$(sed -n {posix_quote(_sed_name_script())} "$helper" | sed -n 1p)
  replaced=${{replaced:-{UNNAMED_DEVICE}}}
fi
# Written beside their final names, and moved into place only once the merge has saved both JSON files: a
# refused merge leaves the earlier device's token and helper with the settings they belong to, and a second
# install never leaves half a file.
cat > "$token_file.$$" <<'{TOKEN_END}'
{_token_file_text(setup)}{TOKEN_END}
chmod 600 "$token_file.$$"
cat > "$helper.$$" <<'{HELPER_END}'
{helper}{HELPER_END}
chmod 700 "$helper.$$"

merge "$settings" "$settings.bak.$stamp" "$state" "$state.bak.$stamp" || {{
  status=$?
  rm -f "$token_file.$$" "$helper.$$"
  exit "$status"
}}
mv -f "$token_file.$$" "$token_file"
mv -f "$helper.$$" "$helper"

echo "Claude Code on this device now fetches its key for {setup_comment(config)} from {_comment(setup.portal_name)} when it needs it."
[ -f "$settings.bak.$stamp" ] && echo "Your previous settings are saved as $settings.bak.$stamp."
[ -n "$replaced" ] && printf '%s%s%s\n' {_replaced_parts(posix_quote, '"$replaced"', " ")}
if sh "$helper" >/dev/null; then
  echo "Checked: the helper fetched the key."
else
  echo "warning: the helper could not fetch the key yet (the line above says why)." >&2
fi
for name in ANTHROPIC_API_KEY ANTHROPIC_AUTH_TOKEN; do
  eval "is_set=\\${{$name+yes}}"
  if [ "$is_set" = yes ]; then
    echo "note: $name is exported in this shell; settings.json sets it to \\"\\" for Claude Code, so the key from {_comment(setup.portal_name)} wins." >&2
  fi
done
echo {posix_quote(next_step(config, DEVICE_NEXT_STEP))}
"""


# The here-document end markers: neither can occur in what they close (checked above, and the
# token is URL-safe base64 after a fixed prefix).
HELPER_END = "PORTAL_HELPER_END"
TOKEN_END = "PORTAL_TOKEN_END"


def render_device_install_ps1(setup: LiveSetup) -> str:
    """The installer `irm <install_url> | iex` runs in PowerShell: the same set-up as the sh one."""
    config = setup.config
    env_lines = "\n".join(
        f"  {powershell_quote(name)} = {powershell_quote(value)}" for name, value in settings_env(config).items()
    )
    managed = ", ".join(powershell_quote(name) for name in REPLACED_ENV)
    helper = render_helper_ps1(setup)
    return f"""# Claude Code -> {setup_comment(config)} with a live key from {_comment(setup.portal_name)} (device {_comment(setup.device_name)})
# Writes a helper and this device's token into %USERPROFILE%\\.claude\\ (readable by you only), points apiKeyHelper
# at the helper in settings.json (keeping everything else, with a backup), and marks Claude Code's first run done
# in %USERPROFILE%\\.claude.json. The key itself is never written: the helper fetches it when Claude Code asks.
# This script holds the device's token: run it once (irm ... | iex), do not share it.
# iex runs it in your PowerShell session: everything happens in a child scope, and a problem stops it with
# a sentence instead of closing the window.
& {{
$ErrorActionPreference = 'Stop'
$dir = if ($env:CLAUDE_CONFIG_DIR) {{ $env:CLAUDE_CONFIG_DIR }} else {{ Join-Path $HOME '.claude' }}
$stateFile = if ($env:CLAUDE_CONFIG_DIR) {{ Join-Path $env:CLAUDE_CONFIG_DIR '.claude.json' }} else {{ Join-Path $HOME '.claude.json' }}
$settings = Join-Path $dir 'settings.json'
$helper = Join-Path $dir '{HELPER_PS1}'
$tokenFile = Join-Path $dir '{TOKEN_FILE}'
$stamp = Get-Date -Format 'yyyyMMddHHmmss'
$afterRefusal = {powershell_quote(after_refusal(setup))}
New-Item -ItemType Directory -Force -Path $dir | Out-Null

function Read-JsonObject([string]$path) {{
  if (-not (Test-Path -LiteralPath $path)) {{ return $null }}
  $text = [System.IO.File]::ReadAllText($path)
  try {{
    $doc = if ($text.Trim()) {{ $text | ConvertFrom-Json }} else {{ New-Object PSObject }}
  }} catch {{
    throw ("$path is not valid JSON. " + $afterRefusal)
  }}
  if ($doc -isnot [System.Management.Automation.PSCustomObject]) {{
    throw ("$path does not hold a JSON object. " + $afterRefusal)
  }}
  return $doc
}}
function Set-Property($object, [string]$name, $value) {{
  $object | Add-Member -NotePropertyName $name -NotePropertyValue $value -Force
}}
function Save-Json([string]$path, $doc) {{
  if (Test-Path -LiteralPath $path) {{ Copy-Item -LiteralPath $path "$path.bak.$stamp" }}
  $json = ConvertTo-Json -InputObject $doc -Depth 64
  [System.IO.File]::WriteAllText($path, $json + "`n", (New-Object System.Text.UTF8Encoding $false))
}}
function Protect-File([string]$path) {{
  # Like chmod 600: only the current user may read it, and nothing is inherited from the folder.
  $acl = New-Object System.Security.AccessControl.FileSecurity
  $acl.SetAccessRuleProtection($true, $false)
  $me = [System.Security.Principal.WindowsIdentity]::GetCurrent().User
  $rule = New-Object System.Security.AccessControl.FileSystemAccessRule($me, 'FullControl', 'Allow')
  $acl.AddAccessRule($rule)
  Set-Acl -LiteralPath $path -AclObject $acl
}}

# Both files are checked before either is written: a refusal leaves both as they were.
$doc = Read-JsonObject $settings
$state = Read-JsonObject $stateFile
if ($null -eq $doc) {{ $doc = [PSCustomObject]@{{ '$schema' = '{SETTINGS_SCHEMA_URL}' }} }}
if ($null -eq $state) {{ $state = New-Object PSObject }}
if (-not $doc.PSObject.Properties['env']) {{ Set-Property $doc 'env' (New-Object PSObject) }}

# Another device's helper here (another team's set-up, or an earlier install) loses its token now: say which.
$replaced = $null
if (Test-Path -LiteralPath $helper) {{
  $old = [System.IO.File]::ReadAllText($helper)
  if ($old -notmatch '(?m)^# Device id: {helper_device_id(setup)} ') {{
    $replaced = if ($old -match {powershell_quote(_ps_name_pattern())}) {{ $Matches[1] }} else {{ '{UNNAMED_DEVICE}' }}
  }}
}}
New-Item -ItemType File -Force -Path $tokenFile | Out-Null
Protect-File $tokenFile
[System.IO.File]::WriteAllText($tokenFile, {powershell_quote(setup.token)})
[System.IO.File]::WriteAllText($helper, @'
{helper}'@)

$newEnv = [ordered]@{{
{env_lines}
}}
$managed = @({managed})
# The extra env this set-up writes, recorded in settings.json for the next installer to take back.
$extra = {_ps_list(extra_env_names(config))}
$envBlock = $doc.env
foreach ($name in @($envBlock.PSObject.Properties.Name)) {{
  if ($managed -notcontains $name) {{ continue }}
  # Also reported: a value replaced by "" (the name is kept so that it outranks the environment).
  if ("$($envBlock.$name)" -and -not "$($newEnv[$name])") {{ Write-Host "removed $name, left over from an earlier set-up" }}
  if (-not $newEnv.Contains($name)) {{ $envBlock.PSObject.Properties.Remove($name) }}
}}
# The extra env an earlier installer recorded and this set-up no longer sets leaves; a broken record is ignored.
$recorded = @()
if ($doc.PSObject.Properties['{EXTRA_ENV_RECORD}'] -and $doc.{EXTRA_ENV_RECORD} -is [System.Array]) {{
  $recorded = @($doc.{EXTRA_ENV_RECORD} | Where-Object {{ $_ -is [string] }})
}}
$takenBack = @()
foreach ($name in @($envBlock.PSObject.Properties.Name)) {{
  # Case-sensitive (-ccontains): environment names in settings.json are.
  if ($recorded -cnotcontains $name -or $newEnv.Contains($name) -or $managed -ccontains $name) {{ continue }}
  if ({_ps_list(sorted(KEPT_ENV))} -ccontains $name) {{ continue }}
  $envBlock.PSObject.Properties.Remove($name)
  $takenBack += $name
}}
foreach ($name in $newEnv.Keys) {{ Set-Property $envBlock $name $newEnv[$name] }}
if ($extra.Count) {{
  Set-Property $doc '{EXTRA_ENV_RECORD}' $extra
}} elseif ($doc.PSObject.Properties['{EXTRA_ENV_RECORD}']) {{
  $doc.PSObject.Properties.Remove('{EXTRA_ENV_RECORD}')
}}
Set-Property $doc 'apiKeyHelper' ('{PS1_HELPER_COMMAND.replace("{path}", "' + $helper + '")}')
Set-Property $state 'hasCompletedOnboarding' $true
Save-Json $settings $doc
Save-Json $stateFile $state
foreach ($name in $takenBack) {{
  Write-Host "removed $name, which this set-up no longer sets"
  if ([Environment]::GetEnvironmentVariable($name, 'User') -or [Environment]::GetEnvironmentVariable($name, 'Process')) {{
    Write-Warning "$name is still set in your Windows environment, and Claude Code will use it: remove it (Settings > Environment Variables), then open a new terminal."
  }}
}}
Write-Host "Claude Code on this device now fetches its key for {setup_comment(config)} from {_comment(setup.portal_name)} when it needs it."
if ($replaced) {{ Write-Host ({_replaced_parts(powershell_quote, "$replaced", " + ")}) }}

& powershell -NoProfile -NonInteractive -ExecutionPolicy Bypass -File $helper | Out-Null
if ($LASTEXITCODE -eq 0) {{ Write-Host 'Checked: the helper fetched the key.' }}
else {{ Write-Warning 'The helper could not fetch the key yet (the line above says why).' }}
Write-Host {powershell_quote(next_step(config, DEVICE_NEXT_STEP))}
}}
"""


INSTALLERS = {
    Platform.LINUX: (render_device_install_sh, SHELL_SCRIPT),
    Platform.MACOS: (render_device_install_sh, SHELL_SCRIPT),
    Platform.WINDOWS: (render_device_install_ps1, "text/plain"),
}


def render_install_refusal_sh(sentence: str) -> str:
    """What sh runs for a refused install link: the portal's sentence on stderr, then exit 1.

    printf, not echo: dash's echo would turn a backslash in the sentence into an escape.
    """
    return f"printf '%s\\n' {posix_quote(sentence)} >&2\nexit 1\n"


def render_device_installer(setup: LiveSetup) -> tuple[str, str]:
    """The installer for the device's platform, and its content type."""
    render, content_type = INSTALLERS[setup.platform]
    return render(setup), content_type
