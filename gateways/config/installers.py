"""install.sh and install.ps1: merge the portal's env keys into ~/.claude/settings.json.

The installers never overwrite the user's file: they keep every other key (permissions,
hooks, plugins, other env), back the old file up first, create it when missing, refuse and
explain when it is not valid JSON, and warn about conflicting variables in the shell.

Variables the portal manages (gateways.rules.MANAGED_ENV) that the new config does not set
are removed from `env`: a leftover ANTHROPIC_AUTH_TOKEN from another gateway would otherwise
win over the new ANTHROPIC_API_KEY.

The env travels inside the script as base64 JSON, so no quoting rule of sh or PowerShell
can touch the values. The sh installer merges with python3, or node when python3 is missing;
both write JSON with two-space indentation, Claude Code's own format, so a file Claude Code
wrote stays byte-for-byte the same apart from the merged keys.
"""

from __future__ import annotations

import base64
import json

from gateways.config.builder import SETTINGS_SCHEMA_URL, ClaudeConfig
from gateways.config.snippets import _comment, _refuse_unsafe, posix_quote
from gateways.rules import MANAGED_ENV

CONFLICT_VARIABLES = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL")


def _b64json(value: object) -> str:
    return base64.b64encode(json.dumps(value, ensure_ascii=False).encode()).decode()


MERGE_PY = r"""
import base64, json, os, sys, tempfile
path, backup = sys.argv[1], sys.argv[2]
new_env = json.loads(base64.b64decode(os.environ["PORTAL_ENV"]).decode())
managed = json.loads(base64.b64decode(os.environ["PORTAL_MANAGED"]).decode())
schema = os.environ["PORTAL_SCHEMA"]
if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        document = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        sys.stderr.write("error: %s is not valid JSON (%s). Nothing was changed; fix or move the file, then run this again.\n" % (path, exc))
        sys.exit(3)
    if not isinstance(document, dict) or not isinstance(document.get("env", {}), dict):
        sys.stderr.write("error: %s does not hold a JSON object with an \"env\" object. Nothing was changed.\n" % path)
        sys.exit(3)
    # The old file may hold an old key: the backup is private like the file itself.
    with os.fdopen(os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as f:
        f.write(text)
    newline = text.endswith("\n") or not text
else:
    document, newline = {"$schema": schema}, True
env = document.setdefault("env", {})
removed = sorted(k for k in env if k in managed and k not in new_env)
for k in removed:
    del env[k]
env.update(new_env)
out = json.dumps(document, indent=2, ensure_ascii=False) + ("\n" if newline else "")
folder = os.path.dirname(path)
fd, tmp = tempfile.mkstemp(dir=folder, prefix=".settings.", suffix=".tmp")
with os.fdopen(fd, "w", encoding="utf-8") as f:
    f.write(out)
os.chmod(tmp, 0o600)
os.replace(tmp, path)
for k in removed:
    print("removed %s, left over from an earlier set-up" % k)
"""

MERGE_JS = r"""
const fs = require("fs"), path = require("path");
const [file, backup] = process.argv.slice(-2);
const dec = (v) => JSON.parse(Buffer.from(v, "base64").toString("utf8"));
const newEnv = dec(process.env.PORTAL_ENV), managed = dec(process.env.PORTAL_MANAGED);
let doc, newline = true;
if (fs.existsSync(file)) {
  const text = fs.readFileSync(file, "utf8");
  try { doc = text.trim() ? JSON.parse(text) : {}; } catch (e) {
    process.stderr.write(`error: ${file} is not valid JSON (${e.message}). Nothing was changed; fix or move the file, then run this again.\n`);
    process.exit(3);
  }
  const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  if (!isObj(doc) || (doc.env !== undefined && !isObj(doc.env))) {
    process.stderr.write(`error: ${file} does not hold a JSON object with an "env" object. Nothing was changed.\n`);
    process.exit(3);
  }
  fs.writeFileSync(backup, text, { mode: 0o600, flag: "wx" });
  newline = text.endsWith("\n") || !text;
} else {
  doc = { $schema: process.env.PORTAL_SCHEMA };
}
doc.env = doc.env || {};
const removed = Object.keys(doc.env).filter((k) => managed.includes(k) && !(k in newEnv)).sort();
for (const k of removed) delete doc.env[k];
Object.assign(doc.env, newEnv);
const tmp = path.join(path.dirname(file), `.settings.${process.pid}.tmp`);
fs.writeFileSync(tmp, JSON.stringify(doc, null, 2) + (newline ? "\n" : ""), { mode: 0o600 });
fs.chmodSync(tmp, 0o600);
fs.renameSync(tmp, file);
for (const k of removed) console.log(`removed ${k}, left over from an earlier set-up`);
"""


def render_install_sh(config: ClaudeConfig) -> str:
    for name, value in config.env.items():
        _refuse_unsafe(name, value)
    expected = {name: config.env.get(name) for name in CONFLICT_VARIABLES}
    conflict_checks = "\n".join(f'check_conflict {name} "{_b64json(expected[name])}"' for name in CONFLICT_VARIABLES)
    return f"""#!/bin/sh
# Claude Code -> {_comment(config.gateway_name)} (key {_comment(config.key_label)}, {_comment(config.key_masked)})
# Merges the portal's settings into ~/.claude/settings.json and keeps everything else there.
# Run: sh install.sh   (or pipe it: curl ... | sh). It contains your personal key: do not share it.
set -eu

PORTAL_ENV='{_b64json(config.env)}'
PORTAL_MANAGED='{_b64json(sorted(MANAGED_ENV))}'
PORTAL_SCHEMA='{SETTINGS_SCHEMA_URL}'
export PORTAL_ENV PORTAL_MANAGED PORTAL_SCHEMA

settings_dir="${{CLAUDE_CONFIG_DIR:-$HOME/.claude}}"
settings="$settings_dir/settings.json"
backup="$settings.bak.$(date +%Y%m%d%H%M%S).$$"

mkdir -p "$settings_dir"
chmod 700 "$settings_dir" 2>/dev/null || true

if command -v python3 >/dev/null 2>&1; then
  python3 -c {posix_quote(MERGE_PY)} "$settings" "$backup"
elif command -v node >/dev/null 2>&1; then
  node -e {posix_quote(MERGE_JS)} "$settings" "$backup"
else
  echo "error: this installer needs python3 or node to edit JSON safely, and neither was found." >&2
  echo "Download settings.json from the portal instead and merge its env block by hand." >&2
  exit 4
fi

echo "Claude Code is set up for {_comment(config.gateway_name)} in $settings."
[ -f "$backup" ] && echo "Your previous file is saved as $backup."

warned=0
check_conflict() {{
  # $1: variable name; $2: base64 JSON of the value the portal set (null when it sets none).
  eval "is_set=\\${{$1+yes}}"
  [ "$is_set" = yes ] || return 0
  case "$1:$2" in
    ANTHROPIC_AUTH_TOKEN:bnVsbA==) reason="it takes precedence over the key the portal just set" ;;
    *) reason="settings.json wins over it for Claude Code, but other tools still see the old value" ;;
  esac
  echo "warning: $1 is exported in this shell; $reason. Remove it from your shell profile." >&2
  warned=1
}}
{conflict_checks}
for rc in "$HOME/.bashrc" "$HOME/.bash_profile" "$HOME/.profile" "$HOME/.zshrc" "$HOME/.zprofile" "$HOME/.config/fish/config.fish"; do
  [ -f "$rc" ] || continue
  lines=$(grep -n -E 'ANTHROPIC_(API_KEY|AUTH_TOKEN|BASE_URL)' "$rc" 2>/dev/null | cut -d: -f1 | tr '\\n' ' ')
  if [ -n "$lines" ]; then
    echo "warning: $rc sets Claude Code variables on line(s) $lines- remove them so only the portal's set-up applies." >&2
    warned=1
  fi
done
[ "$warned" = 1 ] && echo "After cleaning up, open a new terminal." >&2

echo "Next: open a new terminal, run claude, and send a short prompt to check the connection."
"""


def render_install_ps1(config: ClaudeConfig) -> str:
    for name, value in config.env.items():
        _refuse_unsafe(name, value)
    return f"""# Claude Code -> {_comment(config.gateway_name)} (key {_comment(config.key_label)}, {_comment(config.key_masked)})
# Merges the portal's settings into %USERPROFILE%\\.claude\\settings.json and keeps everything else.
# Run: powershell -ExecutionPolicy Bypass -File install.ps1. It contains your personal key: do not share it.
$ErrorActionPreference = 'Stop'
function Decode-Json([string]$b64) {{
  [System.Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($b64)) | ConvertFrom-Json
}}
$newEnv = Decode-Json '{_b64json(config.env)}'
$managed = @(Decode-Json '{_b64json(sorted(MANAGED_ENV))}')
$dir = if ($env:CLAUDE_CONFIG_DIR) {{ $env:CLAUDE_CONFIG_DIR }} else {{ Join-Path $HOME '.claude' }}
$settings = Join-Path $dir 'settings.json'
New-Item -ItemType Directory -Force -Path $dir | Out-Null

if (Test-Path $settings) {{
  $text = [System.IO.File]::ReadAllText($settings)
  try {{
    $doc = if ($text.Trim()) {{ $text | ConvertFrom-Json }} else {{ New-Object PSObject }}
  }} catch {{
    Write-Error "$settings is not valid JSON. Nothing was changed; fix or move the file, then run this again."
    exit 3
  }}
  if ($doc -isnot [System.Management.Automation.PSCustomObject]) {{
    Write-Error "$settings does not hold a JSON object. Nothing was changed."
    exit 3
  }}
  $backup = "$settings.bak." + (Get-Date -Format 'yyyyMMddHHmmss')
  Copy-Item $settings $backup
  Write-Host "Your previous file is saved as $backup."
}} else {{
  $doc = [PSCustomObject]@{{ '$schema' = '{SETTINGS_SCHEMA_URL}' }}
}}
if (-not $doc.PSObject.Properties['env']) {{
  $doc | Add-Member -NotePropertyName env -NotePropertyValue (New-Object PSObject)
}}
$envBlock = $doc.env
foreach ($name in @($envBlock.PSObject.Properties.Name)) {{
  if ($managed -contains $name -and -not $newEnv.PSObject.Properties[$name]) {{
    $envBlock.PSObject.Properties.Remove($name)
    Write-Host "removed $name, left over from an earlier set-up"
  }}
}}
foreach ($p in $newEnv.PSObject.Properties) {{
  $envBlock | Add-Member -NotePropertyName $p.Name -NotePropertyValue $p.Value -Force
}}
$json = ConvertTo-Json -InputObject $doc -Depth 64
[System.IO.File]::WriteAllText($settings, $json + "`n", (New-Object System.Text.UTF8Encoding $false))
Write-Host "Claude Code is set up for {_comment(config.gateway_name)} in $settings."

foreach ($name in @('ANTHROPIC_API_KEY', 'ANTHROPIC_AUTH_TOKEN', 'ANTHROPIC_BASE_URL')) {{
  $user = [Environment]::GetEnvironmentVariable($name, 'User')
  $proc = [Environment]::GetEnvironmentVariable($name, 'Process')
  if ($user -or $proc) {{
    Write-Warning "$name is set in your Windows environment. Remove it (Settings > Environment Variables) so only this set-up applies, then open a new terminal."
  }}
}}
Write-Host 'Next: open a new terminal, run claude, and send a short prompt to check the connection.'
"""
