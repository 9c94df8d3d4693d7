"""What a browser without JavaScript posts back from a form on one of the portal's pages, unchanged: the
tests change a field or two of it, as a person would, and post it."""

from __future__ import annotations

from html.parser import HTMLParser


class _FormReader(HTMLParser):
    """The fields of the form posting to `action`, as a browser without JavaScript submits them."""

    def __init__(self, action: str):
        super().__init__(convert_charrefs=True)
        self.action = action
        self.inside = False
        self.fields: dict[str, str] = {}
        self.select: str | None = None
        self.textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        named = dict(attrs)
        if tag == "form":
            self.inside = named.get("action") == self.action
        elif not self.inside:
            return
        elif tag == "input" and named.get("name"):
            kind = named.get("type", "text")
            if kind in ("submit", "button") or (kind == "checkbox" and "checked" not in named):
                return
            self.fields[named["name"]] = named.get("value") or ""
        elif tag == "select":
            self.select = named.get("name")
        elif tag == "option" and self.select:
            if self.select not in self.fields or "selected" in named:  # the first option, unless one is selected
                self.fields[self.select] = named.get("value") or ""
        elif tag == "textarea" and named.get("name"):
            self.textarea = named["name"]
            self.fields[self.textarea] = ""

    def handle_data(self, data):
        if self.textarea:
            self.fields[self.textarea] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea" and self.textarea:
            self.fields[self.textarea] = self.fields[self.textarea].removeprefix("\n")  # as browsers read it
            self.textarea = None


def form_on(page, action: str) -> dict[str, str]:
    reader = _FormReader(action)
    reader.feed(page.content.decode())
    assert reader.fields, f"the page has no form posting to {action}"
    reader.fields.pop("csrfmiddlewaretoken", None)
    return reader.fields
