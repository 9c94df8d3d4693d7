from __future__ import annotations

from django import forms
from django.conf import settings

from portal.models import ACCESS_TOKEN_MAX_DAYS, Role

# What a form that posts back what it showed (show_hidden_initial) answers when nothing on it was changed.
NOTHING_CHANGED = "Nothing was changed on the form, so nothing was saved."


class TeamForm(forms.Form):
    name = forms.CharField(max_length=100)
    slug = forms.SlugField(max_length=50, help_text="Short name used in URLs and the API, e.g. web-platform.")


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="An existing account's user name.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class SudoForm(forms.Form):
    password = forms.CharField(
        widget=forms.PasswordInput,
        label="Password or authenticator code",
        help_text="Your password, or the 6-digit code from your authenticator app.",
    )


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What it is for, e.g. 'laptop install'.")
    days = forms.IntegerField(
        min_value=1, max_value=ACCESS_TOKEN_MAX_DAYS, required=False, label="Expires after (days)"
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        default = settings.ACCESS_TOKEN_DEFAULT_DAYS
        self.fields["days"].initial = default
        self.fields["days"].help_text = f"Every token expires; left empty, after {default} days."
