"""Web forms; the rules themselves live in gateways.rules and run again in the services."""

from __future__ import annotations

import json

from django import forms

from gateways.models import AuthScheme, Gateway, ProbeMode
from gateways.rules import EXTRA_ENV_HELP, ModelIdStyle


class JSONObjectField(forms.CharField):
    """A JSON object typed into a textarea; blank means {}."""

    widget = forms.Textarea(attrs={"rows": 3})

    def to_python(self, value):
        value = (value or "").strip()
        if not value:
            return {}
        try:
            parsed = json.loads(value)
        except ValueError:
            raise forms.ValidationError('Enter a JSON object, like {"NAME": "value"}.') from None
        if not isinstance(parsed, dict):
            raise forms.ValidationError('Enter a JSON object, like {"NAME": "value"}.')
        return parsed

    def prepare_value(self, value):
        return json.dumps(value, indent=1) if isinstance(value, (dict, list)) else value


class TroubleshootingField(forms.CharField):
    """A gateway's troubleshooting table typed as lines of `symptom :: fix`."""

    widget = forms.Textarea(attrs={"rows": 4})
    separator = " :: "

    def to_python(self, value):
        rows = []
        for number, line in enumerate((value or "").splitlines(), start=1):
            if not line.strip():
                continue
            symptom, sep, fix = line.partition(self.separator.strip())
            if not sep or not symptom.strip() or not fix.strip():
                raise forms.ValidationError(
                    f"Line {number} needs a symptom and a fix separated by ::, like '401 :: Check the key'."
                )
            rows.append([symptom.strip(), fix.strip()])
        return rows

    def prepare_value(self, value):
        if isinstance(value, list):
            # A row saved around the rules (three parts, a bare string) is shown as text to fix, not a 500.
            rows = (self.separator.join(map(str, row)) if isinstance(row, (list, tuple)) else str(row) for row in value)
            return "\n".join(rows)
        return value


class GatewayForm(forms.Form):
    slug = forms.SlugField(max_length=50)
    name = forms.CharField(max_length=100)
    base_url = forms.CharField(max_length=300, help_text="The API root, e.g. https://api.example.com (no /v1).")
    auth_scheme = forms.ChoiceField(choices=AuthScheme.choices)
    requires_sk_prefix = forms.BooleanField(required=False, label="Keys are the full sk-… secret")
    model_id_style = forms.ChoiceField(choices=ModelIdStyle.choices)
    default_model = forms.CharField(max_length=100, required=False, label="ANTHROPIC_MODEL")
    default_opus_model = forms.CharField(max_length=100, required=False, label="Default opus model")
    default_sonnet_model = forms.CharField(max_length=100, required=False, label="Default sonnet model")
    default_haiku_model = forms.CharField(max_length=100, required=False, label="Default haiku model")
    custom_model_option = forms.CharField(max_length=100, required=False)
    custom_model_option_name = forms.CharField(max_length=100, required=False)
    timeout_ms = forms.IntegerField(required=False, label="API_TIMEOUT_MS")
    disable_experimental_betas = forms.BooleanField(required=False, label="Disable experimental betas")
    extra_env = JSONObjectField(required=False, label="Extra environment (JSON object)", help_text=EXTRA_ENV_HELP)
    docs_url = forms.URLField(required=False, assume_scheme="https")
    console_hint = forms.CharField(max_length=300, required=False)
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    troubleshooting = TroubleshootingField(required=False, help_text="One per line: symptom :: fix")
    probe_mode = forms.ChoiceField(choices=ProbeMode.choices)
    probe_prompt = forms.CharField(max_length=200, initial="Reply with the single word: pong")
    probe_model = forms.CharField(max_length=100, required=False)
    probe_interval_minutes = forms.IntegerField(min_value=1, initial=60)

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if editing:
            self.fields["slug"].disabled = True


class KeySettingsForm(forms.Form):
    label = forms.CharField(max_length=100, help_text="Whose or what it is, e.g. 'Alice laptop'.")
    expires_at = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}), label="Expires"
    )
    model = forms.CharField(max_length=100, required=False, label="ANTHROPIC_MODEL override")
    opus_model = forms.CharField(max_length=100, required=False, label="Opus model override")
    sonnet_model = forms.CharField(max_length=100, required=False, label="Sonnet model override")
    haiku_model = forms.CharField(max_length=100, required=False, label="Haiku model override")
    timeout_ms = forms.IntegerField(required=False, label="API_TIMEOUT_MS override")
    disable_experimental_betas = forms.NullBooleanField(
        required=False,
        label="Disable experimental betas",
        widget=forms.Select(choices=[("unknown", "Gateway default"), ("true", "Yes"), ("false", "No")]),
    )
    custom_headers = JSONObjectField(required=False, label="Custom headers (JSON object)")


class KeyCreateForm(KeySettingsForm):
    gateway = forms.ModelChoiceField(queryset=Gateway.objects.all(), to_field_name="slug")
    secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        strip=False,
        help_text="Stored encrypted; after saving only its masked form is shown.",
    )
    field_order = ["gateway", "label", "secret"]


class RotateForm(forms.Form):
    secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}), strip=False, label="New secret"
    )


class AssignForm(forms.Form):
    username = forms.ChoiceField(label="Team member")

    def __init__(self, *args, members=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].choices = [(u, u) for u in members]
