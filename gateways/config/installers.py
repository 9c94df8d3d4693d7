"""install.sh and install.ps1: merge the portal's env keys into ~/.claude/settings.json.

The installers never overwrite the user's file: they keep every other key (permissions,
hooks, plugins, other env), back the old file up first, create it when missing, refuse and
explain when it is not valid JSON, and warn about conflicting variables in the shell.

Variables the portal manages (gateways.rules.MANAGED_ENV), and the extra-env settings that hold a
model id (gateways.rules.MODEL_EXTRA_ENV), that the new config does not set are written as ""
(settings_env, REPLACED_ENV): settings.json outranks the shell only for the names it sets, so a model
id, header or key exported by another gateway's snippet would otherwise still reach the new gateway,
and Claude Code 2.1.330 treats "" as unset (its default model, no extra header, the default timeout).
install.sh names the shell profiles' lines that set any of them. CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS
is the exception (KEPT_ENV): it stays as the developer left it. A static installer also removes the
portal's own apiKeyHelper, which a live device wrote: its key would go out beside the new one.

A gateway's other extra env (any allowed name outside REPLACED_ENV) is recorded by name in settings.json's
top-level `portalExtraEnv` (EXTRA_ENV_RECORD; Claude Code 2.1.330 ignores a key it does not know,
checked in print mode). The next install removes the recorded names its set-up no longer sets, so a
setting staff take out of a gateway, or the previous gateway's, leaves the file; a name the portal
did not record (the developer's own, or one an installer from before the record wrote) is kept.
Removed, not "": the shell's own value, if the developer exports one, is theirs (the merge names it).

They also merge two answers into ~/.claude.json, Claude Code's own state file, with the same
care: `hasCompletedOnboarding: true`, because the first-run onboarding contacts
api.anthropic.com and stops where that host cannot be reached, and, for x-api-key gateways,
the key's last 20 characters in `customApiKeyResponses.approved` (and out of `rejected`):
what answering Yes to "Detected a custom API key" stores, a question whose default is No. A Bearer
set-up also removes `primaryApiKey` (FORGOTTEN_STATE), an Anthropic Console login's key.
Both files are checked before either is written, so a refusal changes nothing: invalid JSON, a folder
or a file that is not UTF-8 where a file should be, or a file its owner made read-only. Both backups
(the old bytes) and both new files are written before either file is replaced. A file that is a link
(a dotfiles repository) stays one: the merge replaces the file it points at. A live key's
installer (gateways.config.live) reuses the merge, adding top-level settings (its apiKeyHelper)
in PORTAL_TOP.

The env travels inside the script as base64 JSON, so no quoting rule of sh or PowerShell
can touch the values. The sh installer merges with python3, or node when python3 is missing;
both write JSON with two-space indentation, Claude Code's own format, so a file Claude Code
wrote stays byte-for-byte the same apart from the merged keys.
"""

from __future__ import annotations

import base64
import json

from gateways.config.builder import SETTINGS_SCHEMA_URL, ClaudeConfig, saved_as
from gateways.config.snippets import (
    CLEARED_ENV,  # REPLACED_ENV and KEPT_ENV: what is not extra env to record
    KEPT_ENV,  # kept when a new set-up does not set it
    REPLACED_ENV,  # what an installer owns in settings.json's env: the new set-up's value or ""
    _comment,
    _refuse_unsafe,
    posix_quote,
    powershell_quote,
    settings_env,  # the downloaded settings.json has the same env
    setup_comment,
    warning_comments,
)

# The names the installers download as (gateways.config.formats), which their "Run:" line repeats.
INSTALL_SH_NAME = "install-claude-{team}-{gateway}.sh"
INSTALL_PS1_NAME = "install-claude-{team}-{gateway}.ps1"


def _saved_as(pattern: str, config: ClaudeConfig) -> str:
    return saved_as(pattern, team_slug=config.team_slug, gateway_slug=config.gateway_slug)


# The same names, checked in the shell and in the shell profiles: an old snippet's exports.
CONFLICT_VARIABLES = REPLACED_ENV
# settings.json's top-level key listing the extra-env names an installer wrote, for the next one to take back.
EXTRA_ENV_RECORD = "portalExtraEnv"

# The apiKeyHelper commands a live device's installer writes (gateways.config.live). Claude Code runs the
# helper with /bin/sh, so the path is expanded where it runs and settings.json stays the same on every
# machine (and byte for byte after a rotation); on Windows it runs it with cmd, which needs PowerShell
# spelled out (-File: no profile, no prompt).
HELPER_SH = "portal-key-helper.sh"
HELPER_PS1 = "portal-key-helper.ps1"
SH_HELPER_COMMAND = f'sh "${{CLAUDE_CONFIG_DIR:-$HOME/.claude}}/{HELPER_SH}"'
PS1_HELPER_COMMAND = 'powershell -NoProfile -NonInteractive -ExecutionPolicy Bypass -File "{path}"'
# What a static installer's merge does with an apiKeyHelper it finds: it removes the portal's own, whose
# key Claude Code would send beside the new one (measured: x-api-key and Bearer, two different keys),
# and only warns about any other, without repeating its command (it may hold a secret).
HELPER_REMOVED = (
    "removed apiKeyHelper, a live device's key helper from an earlier set-up: Claude Code would send its key "
    "beside this one. Remove that device under My devices in the portal, so its token stops working."
)
HELPER_KEPT = (
    "has an apiKeyHelper the portal did not write, kept as it is: Claude Code may send what it "
    "prints as a second key beside this set-up's. Remove it unless this gateway needs it."
)
STATIC_HELPERS = {"remove": [SH_HELPER_COMMAND], "removed": HELPER_REMOVED, "kept": HELPER_KEPT}
# What a refused merge tells the developer to do next: true for a static installer, which they keep and may run
# again. A live installer's link worked once, so it says its own in PORTAL_AFTER_REFUSAL (gateways.config.live).
AFTER_REFUSAL = "Nothing was changed; fix or move the file, then run this again."
# What a Bearer set-up's merge removes from ~/.claude.json, and why (said with the name, never the value).
# An Anthropic Console /login leaves its key there as primaryApiKey, and Claude Code 2.1.330 sends it as
# x-api-key beside ANTHROPIC_AUTH_TOKEN's Bearer token (measured, print and interactive mode), which
# ANTHROPIC_API_KEY="" does not stop: TokenBay refuses the pair with 401. For an x-api-key set-up the key
# stays: ANTHROPIC_API_KEY outranks the cached login for that header (measured: only the gateway key goes
# out), and a developer who goes back to Anthropic keeps the login. A live device's helper outranks it for
# both headers (measured), so gateways.config.live leaves it too.
FORGOTTEN_STATE = {
    "primaryApiKey": (
        "the key of an earlier Anthropic Console login, which Claude Code would send as x-api-key beside this "
        "gateway's token. The backup of that file keeps it; run /login in claude to use Anthropic directly again."
    )
}


def forgotten_state(config: ClaudeConfig) -> dict[str, str]:
    """The ~/.claude.json keys this set-up's merge removes: a Console login's key when the key is a Bearer token."""
    return FORGOTTEN_STATE if config.env.get("ANTHROPIC_AUTH_TOKEN") else {}


def extra_env_names(config: ClaudeConfig) -> list[str]:
    """The names an installer records: the config's extra env outside CLEARED_ENV, which every set-up writes."""
    return sorted(name for name in config.env if name not in CLEARED_ENV)


def _ps_list(names: list[str]) -> str:
    """A PowerShell array of allow-listed names (A-Z, 0-9, _: nothing to quote)."""
    return "@(" + ", ".join(f"'{name}'" for name in names) + ")"


def _b64json(value: object) -> str:
    return base64.b64encode(json.dumps(value, ensure_ascii=False).encode()).decode()


MERGE_PY = r"""
import base64, json, os, re, stat, sys, tempfile
settings_path, settings_backup, state_path, state_backup = sys.argv[1:5]
def decode(name):
    return json.loads(base64.b64decode(os.environ[name]).decode())
new_env, managed, suffix = decode("PORTAL_ENV"), decode("PORTAL_MANAGED"), decode("PORTAL_APPROVE")
# The top-level key recording the extra env written (EXTRA_ENV_RECORD), and the names left as they are (KEPT_ENV).
RECORD, KEPT = __RECORD_AND_KEPT__
# Top-level settings the set-up owns beside env, such as a live key's apiKeyHelper (e30= is {}).
top = json.loads(base64.b64decode(os.environ.get("PORTAL_TOP", "e30=")).decode())
# A static installer's: the portal's own apiKeyHelper commands, to remove, and what to say (e30= is {}).
helpers = json.loads(base64.b64decode(os.environ.get("PORTAL_HELPERS", "e30=")).decode())
# A Bearer set-up's: ~/.claude.json keys to remove, each with why (FORGOTTEN_STATE; e30= is {}).
forget = json.loads(base64.b64decode(os.environ.get("PORTAL_FORGET", "e30=")).decode())
# What to do next: a live installer's own sentence (base64 JSON), else the static installer's.
after = json.loads(base64.b64decode(os.environ["PORTAL_AFTER_REFUSAL"]).decode()) if os.environ.get(
    "PORTAL_AFTER_REFUSAL") else __AFTER_REFUSAL__
def refuse(message):
    sys.stderr.write("error: %s %s\n" % (message, after))
    sys.exit(3)
# Strict JSON, as Claude Code reads it: Python would take NaN and Infinity, and write 1e400 back as Infinity.
def finite(text):
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("the number %s is too large for JSON" % text)
    return value
def constant(name):
    raise ValueError("%s is not JSON" % name)
def load(path, problem):
    # A link (a dotfiles repository) stays a link: the merge reads and replaces the file it points at.
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
    except FileNotFoundError:
        return None, None, real
    except OSError as exc:
        refuse("%s cannot be read (%s)." % (path, exc.strerror))
    if stat.S_ISDIR(info.st_mode):
        refuse("%s is a folder, not a file." % path)
    if not stat.S_ISREG(info.st_mode):
        refuse("%s is not a regular file." % path)
    # Root may write any file, so the mode says too whether its owner made it read-only.
    if not os.access(real, os.W_OK) or not info.st_mode & 0o222:
        refuse("%s is read-only; make it writable (chmod u+w) if the portal may change it." % path)
    try:
        with open(real, "rb") as f:
            raw = f.read()
        text = raw.decode("utf-8")
    except OSError as exc:
        refuse("%s cannot be read (%s)." % (path, exc.strerror))
    except UnicodeDecodeError:
        refuse("%s is not UTF-8 text." % path)
    try:
        document = json.loads(text, parse_float=finite, parse_constant=constant) if text.strip() else {}
    except ValueError as exc:
        refuse("%s is not valid JSON (%s)." % (path, exc))
    why = problem(document)
    if why:
        refuse("%s %s." % (path, why))
    return document, raw, real
def settings_problem(d):
    if not isinstance(d, dict) or not isinstance(d.get("env", {}), dict):
        return 'does not hold a JSON object with an "env" object'
def state_problem(d):
    if not isinstance(d, dict):
        return "does not hold a JSON object"
    answers = d.get("customApiKeyResponses", {})
    if not isinstance(answers, dict) or not all(isinstance(answers.get(k, []), list) for k in ("approved", "rejected")):
        return 'has a "customApiKeyResponses" that is not an object of "approved" and "rejected" lists'
made = []  # the backups and new files written so far: a refusal removes them again
def surrogate_escaped(text):
    # A lone surrogate (a string cut inside an emoji, as node writes it: "\ud83d") has no UTF-8: escaped as node does.
    return re.sub("[\ud800-\udfff]", lambda m: "\\u%04x" % ord(m.group()), text)
def prepare(real, backup, document, raw, newline):
    # The backup (the old bytes) and the new file beside the old one; nothing is replaced yet.
    writing = backup
    try:
        if raw is not None:
            # The old file may hold an old key: the backup is private like the file itself.
            fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            made.append(backup)
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
            newline = raw.endswith(b"\n") or not raw
        writing = real
        text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + ("\n" if newline else "")
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(real), prefix=".portal.", suffix=".tmp")
        made.append(tmp)
        with os.fdopen(fd, "wb") as f:
            f.write(surrogate_escaped(text).encode("utf-8"))
        os.chmod(tmp, 0o600)
        return tmp
    except (OSError, ValueError) as exc:
        for name in made:
            try:
                os.remove(name)
            except OSError:
                pass
        refuse("%s cannot be written (%s)." % (writing, getattr(exc, "strerror", None) or exc))
# Both files are checked before either is written: a refusal leaves both as they were.
settings, settings_raw, settings_real = load(settings_path, settings_problem)
state, state_raw, state_real = load(state_path, state_problem)
if settings is None:
    settings = {"$schema": os.environ["PORTAL_SCHEMA"]}
env = settings.setdefault("env", {})
# Also reported: a value replaced by "" (the name is kept so that it outranks the shell).
removed = sorted(k for k in env if k in managed and env[k] != "" and new_env.get(k, "") == "")
for k in [k for k in env if k in managed and k not in new_env]:
    del env[k]
# The extra env an earlier installer recorded and this set-up no longer sets leaves; a broken record is ignored.
recorded = settings.get(RECORD)
recorded = [k for k in recorded if isinstance(k, str)] if isinstance(recorded, list) else []
extra = sorted(k for k in new_env if k not in managed and k not in KEPT)
taken_back = sorted(k for k in set(recorded) if k in env and k not in new_env and k not in managed and k not in KEPT)
for k in taken_back:
    del env[k]
env.update(new_env)
if extra:
    settings[RECORD] = extra
else:
    settings.pop(RECORD, None)
helper = settings.get("apiKeyHelper") if helpers else None
if helper is not None and helper in helpers["remove"]:
    del settings["apiKeyHelper"]
settings.update(top)
state = {} if state is None else state
state["hasCompletedOnboarding"] = True
forgotten = sorted(k for k in forget if k in state)
for k in forgotten:
    del state[k]
if suffix:
    answers = state.setdefault("customApiKeyResponses", {})
    approved = answers.setdefault("approved", [])
    if suffix not in approved:
        approved.append(suffix)
    answers["rejected"] = [k for k in answers.get("rejected", []) if k != suffix]
# Both backups and both new files are written before either file is replaced.
settings_new = prepare(settings_real, settings_backup, settings, settings_raw, True)
state_new = prepare(state_real, state_backup, state, state_raw, False)  # Claude Code writes no final newline
os.replace(settings_new, settings_real)
try:
    os.replace(state_new, state_real)
except OSError as exc:
    # Rare (a file mounted into a container is busy): said as it is, since settings.json is already saved.
    os.remove(state_new)
    kept = " (the previous one is saved as %s)" % settings_backup if settings_raw is not None else ""
    sys.stderr.write("error: %s cannot be replaced (%s); %s was saved%s.\n" % (state_path, exc.strerror, settings_path, kept))
    sys.exit(3)
for k in removed:
    print("removed %s, left over from an earlier set-up" % k)
for k in taken_back:
    print("removed %s, which this set-up no longer sets" % k)
    if k in os.environ:
        sys.stderr.write("warning: %s is still exported in this shell, and Claude Code will use it: remove it "
                         "from your shell profile, then open a new terminal.\n" % k)
for k in forgotten:
    print("removed %s from %s: %s" % (k, state_path, forget[k]))
if helper is not None:
    if helper in helpers["remove"]:
        print(helpers["removed"])
    else:
        sys.stderr.write("warning: %s %s\n" % (settings_path, helpers["kept"]))
""".replace("__RECORD_AND_KEPT__", json.dumps([EXTRA_ENV_RECORD, sorted(KEPT_ENV)])).replace(
    "__AFTER_REFUSAL__", json.dumps(AFTER_REFUSAL)
)

MERGE_JS = r"""
const fs = require("fs"), path = require("path");
const [settingsPath, settingsBackup, statePath, stateBackup] = process.argv.slice(-4);
const dec = (v) => JSON.parse(Buffer.from(v, "base64").toString("utf8"));
const newEnv = dec(process.env.PORTAL_ENV), managed = dec(process.env.PORTAL_MANAGED), suffix = dec(process.env.PORTAL_APPROVE);
// The top-level key recording the extra env written (EXTRA_ENV_RECORD), and the names left as they are (KEPT_ENV).
const [RECORD, KEPT] = __RECORD_AND_KEPT__;
const top = process.env.PORTAL_TOP ? dec(process.env.PORTAL_TOP) : {};  // e.g. a live key's apiKeyHelper
// A static installer's: the portal's own apiKeyHelper commands, to remove, and what to say.
const helpers = process.env.PORTAL_HELPERS ? dec(process.env.PORTAL_HELPERS) : null;
// A Bearer set-up's: ~/.claude.json keys to remove, each with why (FORGOTTEN_STATE).
const forget = process.env.PORTAL_FORGET ? dec(process.env.PORTAL_FORGET) : {};
const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
// What to do next: a live installer's own sentence, else the static installer's.
const after = process.env.PORTAL_AFTER_REFUSAL ? dec(process.env.PORTAL_AFTER_REFUSAL) : __AFTER_REFUSAL__;
const refuse = (message) => {
  process.stderr.write(`error: ${message} ${after}\n`);
  process.exit(3);
};
// A link (a dotfiles repository) stays a link: the merge reads and replaces the file it points at.
const target = (file) => {
  for (let hops = 0; hops < 40; hops++) {
    let link;
    try { link = fs.readlinkSync(file); } catch { return file; }
    file = path.resolve(path.dirname(file), link);
  }
  return file;
};
const reason = (e) => String(e.message).split(",")[0];  // "EACCES: permission denied"
const load = (file, problem) => {
  const real = target(file);
  let info, raw, text;
  try { info = fs.statSync(real); } catch (e) {
    if (e.code === "ENOENT") return [null, null, real];
    refuse(`${file} cannot be read (${reason(e)}).`);
  }
  if (info.isDirectory()) refuse(`${file} is a folder, not a file.`);
  if (!info.isFile()) refuse(`${file} is not a regular file.`);
  // Root may write any file, so the mode says too whether its owner made it read-only.
  let writable = (info.mode & 0o222) !== 0;
  try { fs.accessSync(real, fs.constants.W_OK); } catch { writable = false; }
  if (!writable) refuse(`${file} is read-only; make it writable (chmod u+w) if the portal may change it.`);
  try { raw = fs.readFileSync(real); } catch (e) { refuse(`${file} cannot be read (${reason(e)}).`); }
  // fatal: bytes that are not UTF-8 are refused, not replaced; ignoreBOM: a BOM stays, as Python keeps it.
  try { text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(raw); } catch {
    refuse(`${file} is not UTF-8 text.`);
  }
  let doc;
  // 1e400 parses as Infinity, which JSON.stringify would write back as null: refused like the Python merge.
  const finite = (key, value) => {
    if (typeof value === "number" && !Number.isFinite(value)) throw new Error("a number is too large for JSON");
    return value;
  };
  try { doc = text.trim() ? JSON.parse(text, finite) : {}; } catch (e) { refuse(`${file} is not valid JSON (${e.message}).`); }
  const why = problem(doc);
  if (why) refuse(`${file} ${why}.`);
  return [doc, raw, real];
};
const settingsProblem = (d) =>
  !isObj(d) || (d.env !== undefined && !isObj(d.env)) ? 'does not hold a JSON object with an "env" object' : "";
const stateProblem = (d) => {
  if (!isObj(d)) return "does not hold a JSON object";
  const a = d.customApiKeyResponses;
  if (a === undefined) return "";
  if (!isObj(a) || ["approved", "rejected"].some((k) => a[k] !== undefined && !Array.isArray(a[k])))
    return 'has a "customApiKeyResponses" that is not an object of "approved" and "rejected" lists';
  return "";
};
const made = [];  // the backups and new files written so far: a refusal removes them again
const writeNew = (file, bytes) => {
  const fd = fs.openSync(file, "wx", 0o600);
  made.push(file);
  try { fs.writeSync(fd, bytes); } finally { fs.closeSync(fd); }
};
// The backup (the old bytes) and the new file beside the old one; nothing is replaced yet.
const prepare = (real, backup, doc, raw, newline) => {
  let writing = backup;
  try {
    if (raw !== null) {
      // The old file may hold an old key: the backup is private like the file itself.
      writeNew(backup, raw);
      newline = raw.length === 0 || raw[raw.length - 1] === 0x0a;
    }
    writing = real;
    const tmp = path.join(path.dirname(real), `.portal.${process.pid}.${made.length}.tmp`);
    writeNew(tmp, JSON.stringify(doc, null, 2) + (newline ? "\n" : ""));
    fs.chmodSync(tmp, 0o600);
    return tmp;
  } catch (e) {
    for (const file of made) try { fs.unlinkSync(file); } catch {}
    refuse(`${writing} cannot be written (${reason(e)}).`);
  }
};
// Both files are checked before either is written: a refusal leaves both as they were.
let [settings, settingsRaw, settingsReal] = load(settingsPath, settingsProblem);
let [state, stateRaw, stateReal] = load(statePath, stateProblem);
if (settings === null) settings = { $schema: process.env.PORTAL_SCHEMA };
settings.env = settings.env || {};
// Also reported: a value replaced by "" (the name is kept so that it outranks the shell).
const removed = Object.keys(settings.env)
  .filter((k) => managed.includes(k) && settings.env[k] !== "" && (newEnv[k] === undefined || newEnv[k] === ""))
  .sort();
for (const k of Object.keys(settings.env)) if (managed.includes(k) && !(k in newEnv)) delete settings.env[k];
// The extra env an earlier installer recorded and this set-up no longer sets leaves; a broken record is ignored.
const recorded = Array.isArray(settings[RECORD]) ? settings[RECORD].filter((k) => typeof k === "string") : [];
const own = (object, k) => Object.prototype.hasOwnProperty.call(object, k);
const extra = Object.keys(newEnv).filter((k) => !managed.includes(k) && !KEPT.includes(k)).sort();
const takenBack = [...new Set(recorded)]
  .filter((k) => own(settings.env, k) && !own(newEnv, k) && !managed.includes(k) && !KEPT.includes(k))
  .sort();
for (const k of takenBack) delete settings.env[k];
Object.assign(settings.env, newEnv);
if (extra.length) settings[RECORD] = extra;
else delete settings[RECORD];
const helper = helpers ? settings.apiKeyHelper ?? null : null;
if (helper !== null && helpers.remove.includes(helper)) delete settings.apiKeyHelper;
Object.assign(settings, top);
state = state === null ? {} : state;
state.hasCompletedOnboarding = true;
const forgotten = Object.keys(forget).filter((k) => Object.prototype.hasOwnProperty.call(state, k)).sort();
for (const k of forgotten) delete state[k];
if (suffix) {
  const answers = (state.customApiKeyResponses = state.customApiKeyResponses || {});
  answers.approved = answers.approved || [];
  if (!answers.approved.includes(suffix)) answers.approved.push(suffix);
  answers.rejected = (answers.rejected || []).filter((k) => k !== suffix);
}
// Both backups and both new files are written before either file is replaced.
const settingsNew = prepare(settingsReal, settingsBackup, settings, settingsRaw, true);
const stateNew = prepare(stateReal, stateBackup, state, stateRaw, false);  // Claude Code writes no final newline
fs.renameSync(settingsNew, settingsReal);
try {
  fs.renameSync(stateNew, stateReal);
} catch (e) {
  // Rare (a file mounted into a container is busy): said as it is, since settings.json is already saved.
  fs.unlinkSync(stateNew);
  const kept = settingsRaw === null ? "" : ` (the previous one is saved as ${settingsBackup})`;
  process.stderr.write(`error: ${statePath} cannot be replaced (${reason(e)}); ${settingsPath} was saved${kept}.\n`);
  process.exit(3);
}
for (const k of removed) console.log(`removed ${k}, left over from an earlier set-up`);
for (const k of takenBack) {
  console.log(`removed ${k}, which this set-up no longer sets`);
  if (own(process.env, k))
    process.stderr.write(`warning: ${k} is still exported in this shell, and Claude Code will use it: remove it ` +
      "from your shell profile, then open a new terminal.\n");
}
for (const k of forgotten) console.log(`removed ${k} from ${statePath}: ${forget[k]}`);
if (helper !== null) {
  if (helpers.remove.includes(helper)) console.log(helpers.removed);
  else process.stderr.write(`warning: ${settingsPath} ${helpers.kept}\n`);
}
""".replace("__RECORD_AND_KEPT__", json.dumps([EXTRA_ENV_RECORD, sorted(KEPT_ENV)])).replace(
    "__AFTER_REFUSAL__", json.dumps(AFTER_REFUSAL)
)


def _state_notes(config: ClaudeConfig) -> list[str]:
    """What the installer did to ~/.claude.json, in the words the developer will meet."""
    notes = ["Claude Code's first-run set-up is marked done, so it does not need to reach api.anthropic.com."]
    if config.approved_key_suffix:
        notes.append('The key is approved, as answering Yes to "Detected a custom API key" would do.')
    return notes


NEXT_STEP = (
    "Next: open a new terminal, run claude in your project folder, answer Yes to the folder-trust question, "
    "{model}and send a short prompt to check the connection."
)
# Without ANTHROPIC_MODEL Claude Code asks for its own default id, which the gateway may not serve.
CHOOSE_MODEL = "choose a model with /model, "


def next_step(config: ClaudeConfig, text: str = NEXT_STEP) -> str:
    """The installer's last line; /model comes before the first prompt when the set-up names no model."""
    return text.format(model="" if config.env.get("ANTHROPIC_MODEL") else CHOOSE_MODEL)


def render_install_sh(config: ClaudeConfig) -> str:
    env = settings_env(config)
    for name, value in env.items():
        _refuse_unsafe(name, value)
    conflict_checks = "\n".join(f"check_conflict {name}" for name in CONFLICT_VARIABLES)
    state_notes = "\n".join(f"echo {posix_quote('  ' + note)}" for note in _state_notes(config))
    comments = "".join(line + "\n" for line in warning_comments(config, "#"))
    warnings = "".join(f"echo {posix_quote('warning: ' + warning)} >&2\n" for warning in config.warnings)
    return f"""#!/bin/sh
# Claude Code -> {setup_comment(config)} (key {_comment(config.key_label)}, {_comment(config.key_masked)})
# Merges the portal's settings into ~/.claude/settings.json and Claude Code's first-run answers into
# ~/.claude.json, and keeps everything else in both. Quit claude first: it rewrites ~/.claude.json.
# Run: sh {_saved_as(INSTALL_SH_NAME, config)}   (or pipe it: curl ... | sh). It contains your personal key: do not share it.
{comments}set -eu

PORTAL_ENV='{_b64json(env)}'
PORTAL_MANAGED='{_b64json(REPLACED_ENV)}'
PORTAL_SCHEMA='{SETTINGS_SCHEMA_URL}'
PORTAL_APPROVE='{_b64json(config.approved_key_suffix)}'
PORTAL_HELPERS='{_b64json(STATIC_HELPERS)}'
PORTAL_FORGET='{_b64json(forgotten_state(config))}'
export PORTAL_ENV PORTAL_MANAGED PORTAL_SCHEMA PORTAL_APPROVE PORTAL_HELPERS PORTAL_FORGET

settings_dir="${{CLAUDE_CONFIG_DIR:-$HOME/.claude}}"
settings="$settings_dir/settings.json"
# Claude Code keeps its state in ~/.claude.json, or in $CLAUDE_CONFIG_DIR when that is set.
state="${{CLAUDE_CONFIG_DIR:-$HOME}}/.claude.json"
stamp="$(date +%Y%m%d%H%M%S).$$"
backup="$settings.bak.$stamp"
state_backup="$state.bak.$stamp"

# Private when this installer makes it; a folder the developer made keeps the mode they gave it.
if [ ! -d "$settings_dir" ]; then
  mkdir -p "$settings_dir"
  chmod 700 "$settings_dir" 2>/dev/null || true
fi

if command -v python3 >/dev/null 2>&1; then
  python3 -c {posix_quote(MERGE_PY)} "$settings" "$backup" "$state" "$state_backup"
elif command -v node >/dev/null 2>&1; then
  node -e {posix_quote(MERGE_JS)} "$settings" "$backup" "$state" "$state_backup"
else
  echo "error: this installer needs python3 or node to edit JSON safely, and neither was found." >&2
  echo "Download settings.json from the portal instead and merge its env block by hand." >&2
  exit 4
fi

echo "Claude Code is set up for {setup_comment(config)} in $settings."
[ -f "$backup" ] && echo "Your previous file is saved as $backup."
echo "In $state:"
{state_notes}
[ -f "$state_backup" ] && echo "Your previous $state is saved as $state_backup."

warned=0
check_conflict() {{
  # settings.json sets every name checked (to "" when this set-up has no value), so it wins for Claude Code.
  eval "is_set=\\${{$1+yes}}"
  [ "$is_set" = yes ] || return 0
  echo "warning: $1 is exported in this shell; settings.json wins over it for Claude Code, but other tools still see the old value. Remove it from your shell profile." >&2
  warned=1
}}
{conflict_checks}
for rc in "$HOME/.bashrc" "$HOME/.bash_profile" "$HOME/.profile" "$HOME/.zshrc" "$HOME/.zprofile" "$HOME/.config/fish/config.fish"; do
  [ -f "$rc" ] || continue
  lines=$(grep -n -E '{"|".join(CONFLICT_VARIABLES)}' "$rc" 2>/dev/null | cut -d: -f1 | tr '\\n' ' ')
  if [ -n "$lines" ]; then
    echo "warning: $rc sets Claude Code variables on line(s) $lines- remove them so only the portal's set-up applies." >&2
    warned=1
  fi
done
[ "$warned" = 1 ] && echo "After cleaning up, open a new terminal." >&2
{warnings}
echo {posix_quote(next_step(config))}
"""


def render_install_ps1(config: ClaudeConfig) -> str:
    env = settings_env(config)
    for name, value in env.items():
        _refuse_unsafe(name, value)
    conflicts = ", ".join(f"'{name}'" for name in CONFLICT_VARIABLES)
    # -like, where * is the only wildcard here: the device's folder is wherever its installer ran.
    portal_helper = PS1_HELPER_COMMAND.replace("{path}", "*\\" + HELPER_PS1)
    state_notes = "\n".join(f"Write-Host {powershell_quote('  ' + note)}" for note in _state_notes(config))
    comments = "".join(line + "\n" for line in warning_comments(config, "#"))
    warnings = "".join(f"Write-Warning {powershell_quote(warning)}\n" for warning in config.warnings)
    forget = "".join(
        f"if ($stateDoc.PSObject.Properties['{name}']) {{\n"
        f"  $stateDoc.PSObject.Properties.Remove('{name}')\n"
        f'  $forgotten += "removed {name} from ${{state}}: " + {powershell_quote(why)}\n'
        "}\n"
        for name, why in forgotten_state(config).items()
    )
    return f"""# Claude Code -> {setup_comment(config)} (key {_comment(config.key_label)}, {_comment(config.key_masked)})
# Merges the portal's settings into %USERPROFILE%\\.claude\\settings.json and Claude Code's first-run answers
# into %USERPROFILE%\\.claude.json, and keeps everything else in both. Quit claude first: it rewrites .claude.json.
# Run: powershell -ExecutionPolicy Bypass -File {_saved_as(INSTALL_PS1_NAME, config)}. It contains your personal key: do not share it.
{comments}$ErrorActionPreference = 'Stop'
function Decode-Text([string]$b64) {{
  [System.Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($b64))
}}
function Decode-Json([string]$b64) {{
  Decode-Text $b64 | ConvertFrom-Json
}}
function Refuse([string]$message) {{
  # Not Write-Error: with 'Stop' it would end the script before the exit code is set.
  [Console]::Error.WriteLine("error: $message {AFTER_REFUSAL}")
  exit 3
}}
function Read-JsonObject([string]$path) {{
  # $null when the file is missing; a refusal, with both files untouched, when it is not a JSON object.
  if (-not (Test-Path -LiteralPath $path)) {{ return $null }}
  $text = [System.IO.File]::ReadAllText($path)
  try {{
    $doc = if ($text.Trim()) {{ $text | ConvertFrom-Json }} else {{ New-Object PSObject }}
  }} catch {{
    Refuse "$path is not valid JSON."
  }}
  if ($doc -isnot [System.Management.Automation.PSCustomObject]) {{ Refuse "$path does not hold a JSON object." }}
  return $doc
}}
function Save-Json([string]$path, $doc, [bool]$existed) {{
  if ($existed) {{
    $backup = "$path.bak." + (Get-Date -Format 'yyyyMMddHHmmss')
    Copy-Item -LiteralPath $path -Destination $backup
    Write-Host "Your previous $path is saved as $backup."
  }}
  $json = ConvertTo-Json -InputObject $doc -Depth 64
  [System.IO.File]::WriteAllText($path, $json + "`n", (New-Object System.Text.UTF8Encoding $false))
}}
$newEnv = Decode-Json '{_b64json(env)}'
$managed = @(Decode-Json '{_b64json(REPLACED_ENV)}')
# The extra env this set-up writes, recorded in settings.json for the next installer to take back.
$extra = @(Decode-Json '{_b64json(extra_env_names(config))}')
# The last 20 characters of ANTHROPIC_API_KEY, as Claude Code stores an approved key; empty for Bearer gateways.
$approve = Decode-Text '{base64.b64encode(config.approved_key_suffix.encode()).decode()}'
$dir = if ($env:CLAUDE_CONFIG_DIR) {{ $env:CLAUDE_CONFIG_DIR }} else {{ Join-Path $HOME '.claude' }}
$settings = Join-Path $dir 'settings.json'
$stateDir = if ($env:CLAUDE_CONFIG_DIR) {{ $env:CLAUDE_CONFIG_DIR }} else {{ $HOME }}
$state = Join-Path $stateDir '.claude.json'

# Both files are checked before either is written: a refusal leaves both as they were.
$doc = Read-JsonObject $settings
$stateDoc = Read-JsonObject $state
if ($stateDoc -and $stateDoc.PSObject.Properties['customApiKeyResponses']) {{
  $answers = $stateDoc.customApiKeyResponses
  $badList = @('approved', 'rejected') | Where-Object {{
    $answers.PSObject.Properties[$_] -and $null -ne $answers.$_ -and $answers.$_ -isnot [System.Array]
  }}
  if ($answers -isnot [System.Management.Automation.PSCustomObject] -or $badList) {{
    Refuse "$state has a customApiKeyResponses that is not an object of approved and rejected lists."
  }}
}}

$settingsExisted = $null -ne $doc
if (-not $settingsExisted) {{
  $doc = [PSCustomObject]@{{ '$schema' = '{SETTINGS_SCHEMA_URL}' }}
}}
if (-not $doc.PSObject.Properties['env']) {{
  $doc | Add-Member -NotePropertyName env -NotePropertyValue (New-Object PSObject)
}}
$envBlock = $doc.env
foreach ($name in @($envBlock.PSObject.Properties.Name)) {{
  if ($managed -notcontains $name) {{ continue }}
  $kept = $newEnv.PSObject.Properties[$name]
  # Also reported: a value replaced by "" (the name is kept so that it outranks the environment).
  if ("$($envBlock.$name)" -and -not ($kept -and "$($kept.Value)")) {{
    Write-Host "removed $name, left over from an earlier set-up"
  }}
  if (-not $kept) {{ $envBlock.PSObject.Properties.Remove($name) }}
}}
# The extra env an earlier installer recorded and this set-up no longer sets leaves; a broken record is ignored.
$recorded = @()
if ($doc.PSObject.Properties['{EXTRA_ENV_RECORD}'] -and $doc.{EXTRA_ENV_RECORD} -is [System.Array]) {{
  $recorded = @($doc.{EXTRA_ENV_RECORD} | Where-Object {{ $_ -is [string] }})
}}
$takenBack = @()
foreach ($name in @($envBlock.PSObject.Properties.Name)) {{
  # Case-sensitive (-ccontains): environment names in settings.json are.
  if ($recorded -cnotcontains $name -or $newEnv.PSObject.Properties[$name] -or $managed -ccontains $name) {{ continue }}
  if ({_ps_list(sorted(KEPT_ENV))} -ccontains $name) {{ continue }}
  $envBlock.PSObject.Properties.Remove($name)
  $takenBack += $name
}}
foreach ($p in $newEnv.PSObject.Properties) {{
  $envBlock | Add-Member -NotePropertyName $p.Name -NotePropertyValue $p.Value -Force
}}
if ($extra.Count) {{
  $doc | Add-Member -NotePropertyName '{EXTRA_ENV_RECORD}' -NotePropertyValue $extra -Force
}} elseif ($doc.PSObject.Properties['{EXTRA_ENV_RECORD}']) {{
  $doc.PSObject.Properties.Remove('{EXTRA_ENV_RECORD}')
}}
$helperNote = $null
if ($doc.PSObject.Properties['apiKeyHelper']) {{
  if ("$($doc.apiKeyHelper)" -like '{portal_helper}') {{
    $doc.PSObject.Properties.Remove('apiKeyHelper')
    $helperNote = {powershell_quote(HELPER_REMOVED)}
  }} else {{
    Write-Warning ("$settings " + {powershell_quote(HELPER_KEPT)})
  }}
}}

$stateExisted = $null -ne $stateDoc
if (-not $stateExisted) {{ $stateDoc = New-Object PSObject }}
$stateDoc | Add-Member -NotePropertyName hasCompletedOnboarding -NotePropertyValue $true -Force
$forgotten = @()
{forget}if ($approve) {{
  if (-not $stateDoc.PSObject.Properties['customApiKeyResponses']) {{
    $stateDoc | Add-Member -NotePropertyName customApiKeyResponses -NotePropertyValue (New-Object PSObject)
  }}
  $answers = $stateDoc.customApiKeyResponses
  # Case-sensitive comparisons (-cnotcontains, -cne): keys are.
  $approved = if ($answers.PSObject.Properties['approved']) {{ @($answers.approved) }} else {{ @() }}
  if ($approved -cnotcontains $approve) {{ $approved += $approve }}
  $rejected = if ($answers.PSObject.Properties['rejected']) {{ @($answers.rejected | Where-Object {{ $_ -cne $approve }}) }} else {{ @() }}
  $answers | Add-Member -NotePropertyName approved -NotePropertyValue $approved -Force
  $answers | Add-Member -NotePropertyName rejected -NotePropertyValue $rejected -Force
}}

Save-Json $settings $doc $settingsExisted
Save-Json $state $stateDoc $stateExisted
if ($helperNote) {{ Write-Host $helperNote }}
foreach ($name in $takenBack) {{
  Write-Host "removed $name, which this set-up no longer sets"
  if ([Environment]::GetEnvironmentVariable($name, 'User') -or [Environment]::GetEnvironmentVariable($name, 'Process')) {{
    Write-Warning "$name is still set in your Windows environment, and Claude Code will use it: remove it (Settings > Environment Variables), then open a new terminal."
  }}
}}
foreach ($note in $forgotten) {{ Write-Host $note }}
Write-Host "Claude Code is set up for {setup_comment(config)} in $settings."
Write-Host "In ${{state}}:"
{state_notes}

foreach ($name in @({conflicts})) {{
  $user = [Environment]::GetEnvironmentVariable($name, 'User')
  $proc = [Environment]::GetEnvironmentVariable($name, 'Process')
  if ($user -or $proc) {{
    Write-Warning "$name is set in your Windows environment. Remove it (Settings > Environment Variables) so only this set-up applies, then open a new terminal."
  }}
}}
{warnings}Write-Host {powershell_quote(next_step(config))}
"""
