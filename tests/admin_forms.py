"""What a browser posts back from a Django admin page it was shown, unchanged: the tests change one field of it."""

from __future__ import annotations

from django import forms


def form_data(page) -> dict:
    """The admin form's current values, as a browser posts them back unchanged."""
    form = page.context["adminform"].form
    data: dict = {}
    for name, field in form.fields.items():
        if field.disabled:
            continue
        value = form[name].value()
        if isinstance(field.widget, forms.MultiWidget):
            for index, part in enumerate(field.widget.decompress(value)):
                data[f"{name}_{index}"] = "" if part is None else str(part)
        elif isinstance(value, bool):
            if value:
                data[name] = "on"
        elif isinstance(value, (list, tuple)):
            data[name] = [getattr(item, "pk", item) for item in value]
        else:
            data[name] = "" if value is None else value
        if field.show_hidden_initial:  # what the page showed, posted back beside the field (initial-<name>)
            shown = form[name]
            data[shown.html_initial_name] = shown.field.hidden_widget().format_value(shown.initial) or ""
    for inline in page.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management[name].value()
    return data


def rename_in_the_admin(root_client, user, username: str) -> None:
    """Staff rename the account on its admin page, as a browser would (the rename is audited there)."""
    url = f"/admin/auth/user/{user.pk}/change/"
    data = form_data(root_client.get(url))
    data["username"] = username
    assert root_client.post(url, data).status_code == 302
    user.refresh_from_db()
    assert user.username == username
