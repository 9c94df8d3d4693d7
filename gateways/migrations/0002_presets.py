"""The gateways the portal ships with, from the seed guides (Tokaify, TokenBay) and Anthropic itself.

Every install has applied this migration already, so a new preset never goes into PRESETS here (tests,
which build a fresh database, would see it; no existing install would). Add it in a new data migration
(`gateways/00NN_<slug>_preset.py`, depending on the latest) written as this one is: create the preset only
when its slug is free, since staff may have made a gateway of that slug, which must not be rewritten
behind their backs; and on the way back remove only the preset rows it created that no key uses.
"""

from django.db import migrations

PRESETS = [
    {
        "slug": "tokaify",
        "name": "Tokaify",
        "base_url": "https://api.tokaify.com",
        "auth_scheme": "x-api-key",
        "requires_sk_prefix": True,
        "model_id_style": "as-is",
        "console_hint": "Tokaify console > Token Management > Add Token, then Copy Secret for the full sk-... value.",
        "notes": (
            "Claude Code sends ANTHROPIC_API_KEY as the X-Api-Key header. Use the API root as base URL, never /v1. "
            "Choose the model after launch with /model; add ANTHROPIC_CUSTOM_MODEL_OPTION only when a gateway model "
            "is missing from the list. If the gateway rejects context_management, disable experimental betas."
        ),
        "troubleshooting": [
            [
                "401 or 403",
                "Check that ANTHROPIC_API_KEY holds the full sk-... secret; whether the token is disabled, expired or "
                "out of balance; whether the model chosen in /model is allowed for the token; whether an IP "
                "restriction blocks the request.",
            ],
            [
                "ERR_BAD_REQUEST with context_management: Extra inputs are not permitted",
                "Usually not a key problem: Claude Code's experimental betas send an extra context_management field. "
                "Add \"CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS\": \"1\" to the env block of ~/.claude/settings.json, "
                "close the terminal, open a new one and run claude again. Read the 400 at the bottom first; the "
                "\"Unable to connect to Anthropic services\" line at the top is generic wording.",
            ],
            [
                "The model you want is not listed in /model",
                "Confirm the account has access to it; if the endpoint supports it, add it with "
                "ANTHROPIC_CUSTOM_MODEL_OPTION (and _NAME).",
            ],
            [
                "Base URL ends in /v1",
                "Claude Code builds the request path itself: use https://api.tokaify.com, not .../v1.",
            ],
        ],
    },
    {
        "slug": "tokenbay",
        "name": "TokenBay",
        "base_url": "https://api.tokenbay.com",
        "auth_scheme": "bearer",
        "requires_sk_prefix": True,
        "model_id_style": "dotted",
        "default_model": "sonnet",
        "default_opus_model": "claude-opus-4.8",
        "default_sonnet_model": "claude-sonnet-4.6",
        "default_haiku_model": "claude-haiku-4.5",
        "timeout_ms": 600000,
        "console_hint": "TokenBay console > API keys > Create key. The full sk-... string is shown only once.",
        "notes": (
            "ANTHROPIC_AUTH_TOKEN is sent as the Bearer credential and ANTHROPIC_API_KEY must be explicitly empty. "
            "Model versions use the dotted form only (claude-sonnet-4.6, never claude-sonnet-4-6). API_TIMEOUT_MS "
            "raises the per-request timeout for long reasoning. Run /logout once if you were signed in to Anthropic."
        ),
        "troubleshooting": [
            [
                "Model not found / auth failure",
                "Usually a credential conflict. Confirm ANTHROPIC_API_KEY=\"\" is set to empty in your shell and "
                "reopen the terminal; then /logout inside the session and restart claude.",
            ],
            [
                "Still getting auth errors after emptying the key",
                "A cached login state remains. Run /logout and restart claude. Use /status to double-check the base "
                "URL and auth source.",
            ],
            [
                "Env-var changes don't take effect",
                "Env vars only get read in a new terminal; settings.json changes require restarting claude.",
            ],
            ["Context limit exceeded", "Split the task or start a new session (/clear)."],
        ],
    },
    {
        "slug": "anthropic",
        "name": "Anthropic",
        "base_url": "https://api.anthropic.com",
        "auth_scheme": "x-api-key",
        "requires_sk_prefix": True,
        "model_id_style": "hyphenated",
        "console_hint": "Anthropic Console > API keys > Create key.",
        "notes": "Anthropic's own API. Keys start with sk-ant-.",
        "troubleshooting": [
            ["401 invalid x-api-key", "The key is wrong or was deleted in the Console; create a new one."],
        ],
    },
]


def add_presets(apps, schema_editor):
    Gateway = apps.get_model("gateways", "Gateway")
    for preset in PRESETS:
        # A gateway staff made under the slug is left as it is (no audit row, no stale downloads would tell).
        Gateway.objects.get_or_create(slug=preset["slug"], defaults={**preset, "is_preset": True})


def remove_presets(apps, schema_editor):
    Gateway = apps.get_model("gateways", "Gateway")
    slugs = [p["slug"] for p in PRESETS]
    Gateway.objects.filter(slug__in=slugs, is_preset=True, keys__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("gateways", "0001_initial")]
    operations = [migrations.RunPython(add_presets, remove_presets)]
