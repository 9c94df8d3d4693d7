"""The team page's form for a new channel; the rules live in alerts.rules and run in the service."""

from __future__ import annotations

from django import forms

from alerts import rules
from alerts.models import ChannelKind


class ChannelForm(forms.Form):
    kind = forms.ChoiceField(choices=ChannelKind.choices, initial=ChannelKind.WEBHOOK, label="Kind")
    target = forms.CharField(
        max_length=rules.MAX_TARGET,
        label="URL or e-mail address",
        help_text="Webhook and Slack: the URL to POST to. E-mail: the address, such as a team list.",
    )
    secret = forms.CharField(
        required=False,
        max_length=rules.MAX_SECRET,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        label="Signing secret (webhook only)",
        help_text=f"{rules.MIN_SECRET} characters or more; signs each body in X-Portal-Signature. Never shown again.",
    )
