"""Web forms, built from the models' field tuples; the rules live in gateways.rules and run in the services."""

from __future__ import annotations

import json
from datetime import datetime

from django import forms
from django.db import models
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from gateways import rules, services
from gateways.models import (
    GATEWAY_FIELDS,
    KEY_OVERRIDE_FIELDS,
    KEY_SETTING_FIELDS,
    Device,
    Gateway,
    GatewayKey,
    Platform,
)
from gateways.rules import EXTRA_ENV_HELP
from portal.errors import RuleError, add_to_form


class JSONObjectField(forms.JSONField):
    """A JSON object typed into a textarea; blank means {}."""

    widget = forms.Textarea(attrs={"rows": 3})
    default_error_messages = {"invalid": 'Enter a JSON object, like {"NAME": "value"}.'}

    def to_python(self, value):
        if isinstance(value, str) and not value.strip():
            return {}
        try:
            parsed = super().to_python(value)
        except RecursionError:  # nested deeper than the parser's stack; the API's parser refuses it the same way
            raise forms.ValidationError(
                'This JSON is nested too deeply. Enter a flat object, like {"NAME": "value"}.', code="invalid"
            ) from None
        if parsed is None:
            return {}
        if not isinstance(parsed, dict):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return parsed

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except RecursionError:  # shown again as typed, beside the error to_python gave
            return forms.fields.InvalidJSONInput(data)

    def prepare_value(self, value):
        return json.dumps(value, indent=1, ensure_ascii=False) if isinstance(value, (dict, list)) else value


class TroubleshootingField(forms.CharField):
    """A gateway's troubleshooting table typed as lines of `symptom :: fix`."""

    widget = forms.Textarea(attrs={"rows": 4})
    separator = " :: "

    def __init__(self, *, encoder=None, decoder=None, **kwargs):  # what a model JSONField passes on
        super().__init__(**kwargs)

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


class OpenedAtField(forms.CharField):
    """The gateway's updated_at when its form was shown, posted back with every field: a save over a
    change made since would put the old values back, so services.refuse_changed_since refuses it."""

    widget = forms.HiddenInput
    default_error_messages = {
        "required": "This form does not say which version of the gateway it showed: reload the page and make your "
        "change again.",
        "invalid": "This form's record of when the gateway last changed is garbled: reload the page and make your "
        "change again.",
    }

    def to_python(self, value):
        text = super().to_python(value)
        if not text:
            return None
        try:
            parsed = parse_datetime(text)
        except ValueError:  # well formed but out of range, like month 13
            parsed = None
        if parsed is None or timezone.is_naive(parsed):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return parsed

    def prepare_value(self, value):
        return value.isoformat() if isinstance(value, datetime) else value


class ExpiryHiddenInput(forms.HiddenInput):
    """The expiry the page showed, with its UTC offset: in the hour the clocks repeat, the wall time alone
    names two instants."""

    def format_value(self, value):
        return value.replace(microsecond=0).isoformat() if isinstance(value, datetime) else super().format_value(value)


class ExpiryField(forms.DateTimeField):
    """A key's expiry typed as the portal's wall time (a datetime-local box takes no offset).

    The value the page showed, posted back unchanged, is that instant even in the hour the clocks repeat;
    a new time the clocks show twice or never is refused with a sentence (rules.expiry_from_wall_time).
    """

    hidden_widget = ExpiryHiddenInput
    widget = forms.DateTimeInput(attrs={"type": "datetime-local"})
    shown: datetime | None = None  # the expiry the form showed; set by the form

    def prepare_value(self, value):
        # Aware, in the portal's zone: the box shows its wall time and the hidden copy its offset too.
        return timezone.localtime(value) if isinstance(value, datetime) and timezone.is_aware(value) else value

    def to_python(self, value):
        if not isinstance(value, str) or not value.strip():
            return super().to_python(value)
        try:
            typed = parse_datetime(value.strip())
        except ValueError:  # well formed but out of range, like month 13
            typed = None
        if typed is None or timezone.is_aware(typed):
            return super().to_python(value)
        if self.shown is not None and timezone.localtime(self.shown).replace(tzinfo=None, microsecond=0) == typed:
            return self.shown
        try:
            return rules.expiry_from_wall_time(typed, timezone.get_current_timezone(), offset_possible=False)
        except RuleError as exc:
            raise forms.ValidationError(str(exc), code="ambiguous_timezone") from None

    def show(self, value: object) -> None:
        """Remember the expiry the page showed (a datetime, or the hidden copy as posted)."""
        if isinstance(value, str):
            try:
                value = parse_datetime(value.strip())
            except ValueError:
                value = None
        self.shown = value if isinstance(value, datetime) and timezone.is_aware(value) else None
        try:
            if self.shown is not None:
                timezone.localtime(self.shown)  # a hand-made copy the zone cannot show is no copy of what it showed
        except OverflowError:
            self.shown = None


def input_formfield(field: models.Field, **kwargs) -> forms.Field | None:
    """The form field for a model field, as these input forms want it."""
    if field.has_default() and callable(field.default):
        kwargs.setdefault("show_hidden_initial", False)  # nothing here compares against the initial value
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)


class InputForm(forms.ModelForm):
    """A model form that only parses input: the service applies the rules, saves and audits."""

    def _post_clean(self) -> None:
        # No instance is built or validated here: uniqueness and the catalogue rules are the
        # service's, which answers with a RuleError shown by portal.errors.add_to_form.
        pass


class GatewayForm(InputForm):
    class Meta:
        model = Gateway
        fields = ("slug", *GATEWAY_FIELDS)
        formfield_callback = input_formfield
        field_classes = {"extra_env": JSONObjectField, "troubleshooting": TroubleshootingField}
        widgets = {"notes": forms.Textarea(attrs={"rows": 3})}
        labels = {
            "requires_sk_prefix": "Keys are the full sk-… secret",
            "default_model": "ANTHROPIC_MODEL",
            "timeout_ms": "API_TIMEOUT_MS",
            "extra_env": "Extra environment (JSON object)",
        }
        help_texts = {
            "base_url": "The API root, e.g. https://api.example.com (no /v1).",
            "requires_sk_prefix": "",
            "troubleshooting": "One per line: symptom :: fix",
            "extra_env": EXTRA_ENV_HELP,
        }

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if editing:
            self.fields["slug"].disabled = True
            # Only when editing: a new gateway has no earlier version to save over.
            self.fields["opened_at"] = OpenedAtField()

    def gateway_fields(self) -> dict:
        """The gateway's fields as typed, for the service (not the slug once set, nor the version shown)."""
        return {name: value for name, value in self.cleaned_data.items() if name in GATEWAY_FIELDS}


class GatewayAdminForm(forms.ModelForm):
    """The admin's gateway form, which posts every field back: refused when the gateway changed since it
    was shown. The admin validates and saves in one transaction, so the row locked here stays as checked."""

    opened_at = OpenedAtField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["opened_at"].required = True
            self.fields["opened_at"].initial = self.instance.updated_at

    def clean(self) -> dict:
        super().clean()
        opened_at = self.cleaned_data.get("opened_at")
        if self.instance.pk and opened_at:
            try:
                services.refuse_changed_since(Gateway.objects.select_for_update().get(pk=self.instance.pk), opened_at)
            except RuleError as exc:
                add_to_form(self, exc)
        return self.cleaned_data


class KeySettingsForm(InputForm):
    class Meta:
        model = GatewayKey
        fields = KEY_SETTING_FIELDS
        formfield_callback = input_formfield
        field_classes = {"custom_headers": JSONObjectField, "expires_at": ExpiryField}
        widgets = {
            # Its values map None, True and False both ways (a plain Select shows "True", which no option is).
            "disable_experimental_betas": forms.NullBooleanSelect(),
        }
        labels = {
            "expires_at": "Expires",
            "model": "ANTHROPIC_MODEL override",
            "opus_model": "Opus model override",
            "sonnet_model": "Sonnet model override",
            "haiku_model": "Haiku model override",
            "timeout_ms": "API_TIMEOUT_MS override",
            "custom_headers": "Custom headers (JSON object)",
        }
        help_texts = {"label": "Whose or what it is, e.g. 'Alice laptop'; unique in the team."}

    # Shown folded under "Model overrides and advanced settings": most keys keep the gateway's defaults.
    advanced = KEY_OVERRIDE_FIELDS
    # An existing key's settings: the page carries the values it showed. A new key has none (and its secret
    # must never be echoed into the page).
    posts_back_what_it_showed = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in KEY_SETTING_FIELDS if self.posts_back_what_it_showed else ():
            # The page posts back what it showed, so changed_data is what was changed on it: a save does not
            # put back what another admin saved after the page was opened.
            self.fields[name].show_hidden_initial = True
        self.fields["disable_experimental_betas"].widget.choices = [
            ("unknown", "Gateway default"),
            ("true", "Yes"),
            ("false", "No"),
        ]
        expiry = self.fields["expires_at"]
        assert isinstance(expiry, ExpiryField)  # Meta.field_classes
        if self.is_bound and self.posts_back_what_it_showed:
            expiry.show(self.data.get(self.add_initial_prefix("expires_at")))
        zone = timezone.get_current_timezone_name()
        self.fields["expires_at"].label = f"Expires ({zone})"
        self.fields[
            "expires_at"
        ].help_text = f"Date and time in {zone}, the portal's time zone; leave empty for a key that does not expire."

    def basic_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name not in self.advanced]

    def advanced_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name in self.advanced]

    def advanced_has_errors(self) -> bool:
        return any(name in self.errors for name in self.advanced)


class KeyCreateForm(KeySettingsForm):
    gateway = forms.ModelChoiceField(
        queryset=Gateway.objects.all(), to_field_name="slug", widget=forms.Select(attrs={"data-hints": ""})
    )
    secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        strip=False,
        help_text="Stored encrypted; after saving only its masked form is shown.",
    )
    field_order = ["gateway", "label", "secret"]
    posts_back_what_it_showed = False


class RotateForm(forms.Form):
    """A new secret and its expiry: a rotation renews an expiring key only with the new secret's own date.
    Pre-filled with the key's expiry (`initial`); the page posts back what it showed, so an unchanged box
    changes nothing (nor puts back an expiry another admin saved since)."""

    secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}), strip=False, label="New secret"
    )
    expires_at = ExpiryField(required=False, show_hidden_initial=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        expiry = self.fields["expires_at"]
        assert isinstance(expiry, ExpiryField)  # declared above
        expiry.show(self.data.get(self.add_initial_prefix("expires_at")) if self.is_bound else None)
        zone = timezone.get_current_timezone_name()
        expiry.label = f"New secret's expiry ({zone})"
        expiry.help_text = (
            f"Date and time in {zone} at which the new secret stops working, as the gateway's console says; "
            "leave empty if it does not expire."
        )


class AssignForm(forms.Form):
    """The key page's "Assign to": a list to pick from, or past PICK_FROM_AT_MOST names one to type (with
    the names offered as the browser's suggestions), since nobody scrolls through hundreds of options."""

    PICK_FROM_AT_MOST = 50

    username = forms.ChoiceField(label="Team member")

    def __init__(self, *args, members=(), **kwargs):
        super().__init__(*args, **kwargs)
        username = self.fields["username"]
        assert isinstance(username, forms.ChoiceField)  # declared above; tells the type checker it has choices
        username.choices = [(u, u) for u in members]
        # Typed (a text field with the names as suggestions) rather than picked from a list.
        self.typed = len(username.choices) > self.PICK_FROM_AT_MOST


class DeviceForm(forms.ModelForm):
    """Install on a new device: its name and system; gateways.devices checks both."""

    class Meta:
        model = Device
        fields = ("name", "platform")
        labels = {"name": "Device name", "platform": "System"}
        widgets = {"name": forms.TextInput(attrs={"placeholder": "work laptop"})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        platform = self.fields["platform"]
        assert isinstance(platform, forms.ChoiceField)
        platform.choices = Platform.choices  # a system is always chosen: no blank line
