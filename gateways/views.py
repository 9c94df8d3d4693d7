"""Pages for the developer's set-up, the gateway catalogue, a team's keys and the connections report."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseRedirect, JsonResponse, QueryDict
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from gateways import charts, dashboard, devices, services
from gateways.config import formats, guide
from gateways.connections import (
    STATES,
    ConnectionFilters,
    connection_rows,
    connections_csv,
    connections_for,
    live_devices_by_assignment,
)
from gateways.forms import AssignForm, DeviceForm, GatewayForm, KeyCreateForm, KeySettingsForm, RotateForm
from gateways.models import (
    DEVICE_INSTALL_MINUTES,
    KEY_SETTING_FIELDS,
    Assignment,
    Gateway,
    GatewayKey,
    KeyState,
    ProbeResult,
)
from gateways.permissions import ASSIGNMENT_REMOVAL_DENIED, device_for_removal, key_with_role
from gateways.rules import UnrepresentableValue
from gateways.selectors import (
    assignable_usernames,
    first_run_checklist,
    key_assignees,
    key_devices,
    my_assignment,
    my_assignments,
    my_devices,
    page_of,
    team_members,
)
from portal import handover
from portal.crypto import DecryptionError, Secret
from portal.decorators import staff_required
from portal.errors import RuleError, add_to_form
from portal.forms import NOTHING_CHANGED, MemberForm
from portal.http import AuthenticatedHttpRequest, local_path
from portal.models import Role, Team
from portal.ordering import ReadingOrder
from portal.pagination import page_asked
from portal.permissions import administers_a_team, require_role, team_with_role
from portal.sudo import sudo_redirect
from portal.times import written_time

CONNECTIONS_PER_PAGE = 100
DEVICES_PER_PAGE = 100
SETUP_CARDS_WITHOUT_INDEX = 5
# What the page's Reveal and Copy buttons record as the fetch's format.
REVEAL_PURPOSES = ("reveal", "copy")
CATALOGUE_STAFF_ONLY = "Only staff can change the gateway catalogue."


def _setup_cards(request: AuthenticatedHttpRequest, revealed: dict[int, dict[str, str]] | None = None) -> list[dict]:
    """One card per assignment of the caller, the key masked in every snippet unless `revealed` holds its texts."""
    revealed = revealed or {}
    cards = []
    for assignment in my_assignments(request.user):
        card = {"assignment": assignment, "key": assignment.key, "gateway": assignment.key.gateway, "error": ""}
        try:
            config = services.masked_config(assignment=assignment)
        except (services.ConfigUnavailable, UnrepresentableValue) as exc:
            card["error"] = str(exc)
        else:
            texts = revealed.get(assignment.pk, {})
            card["revealed"] = bool(texts)
            card["tabs"] = []
            for tab in guide.TABS:
                try:
                    text = texts.get(tab.slug) or formats.render(tab.format, config)[0]
                    card["tabs"].append({"tab": tab, "text": text, "error": ""})
                except UnrepresentableValue as exc:
                    card["tabs"].append({"tab": tab, "text": "", "error": str(exc)})
            card["steps"] = guide.after_setup_steps(assignment.key.gateway)
            card["warnings"] = config.warnings
            card["troubleshooting"] = guide.troubleshooting_for(assignment.key.gateway)
        cards.append(card)
    return cards


def _holder_notices(cards: list[dict]) -> list[dict]:
    """What concerns the developer about each key they hold: rotated since their download, disabled, expiring..."""
    soon = timedelta(days=settings.EXPIRY_WARNING_DAYS)
    notices = []
    for card in cards:
        assignment = card["assignment"]
        if notice := assignment.notice(soon=soon):
            kind, sentence = notice
            # Download again only where the copy they downloaded is old: not for a live device behind its settings.
            again = assignment.last_download_format if assignment.last_download_format in formats.FORMATS else ""
            if kind == "changed" and not assignment.changed_since_download:
                again = ""
            notices.append({"assignment": assignment, "kind": kind, "sentence": sentence, "format": again})
    return notices


def _render_setup(request: AuthenticatedHttpRequest, cards: list[dict], status: int = 200) -> HttpResponse:
    user_agent = request.META.get("HTTP_USER_AGENT", "")
    platform = guide.platform_for_user_agent(user_agent)
    for card in cards:
        card["device_form"] = _device_form(request, card["assignment"].pk, platform)
    context = {
        "cards": cards,
        "install_minutes": DEVICE_INSTALL_MINUTES,
        "portal_name": devices.portal_name(),
        "selected_tab": guide.tab_for_user_agent(user_agent),
        "notices": _holder_notices(cards),
        "checklist": first_run_checklist(request.user) if not cards else None,
        # Past a few cards the page is long: it starts with a link to each, in the cards' order.
        "card_index": len(cards) > SETUP_CARDS_WITHOUT_INDEX,
    }
    return render(request, "gateways/setup.html", context, status=status)


# The handover purpose of a Reveal without JavaScript: the card's snippets with the key, for My set-up to show once.
SETUP_REVEALED = "setup-revealed"


@login_required
@never_cache  # a revealed card holds the developer's key
@sensitive_variables("revealed", "shown")
def setup(request: AuthenticatedHttpRequest) -> HttpResponse:
    """My set-up: every assignment of the caller, each with a tab per shell, the key masked until revealed.

    Viewing is not a fetch: the key leaves the portal only through Reveal, Copy (setup_reveal) or a download.
    A Reveal without JavaScript redirects here with the card's snippets kept for one showing: a reload masks it.
    """
    revealed = handover.take_shown_once(request, SETUP_REVEALED) if request.method == "GET" else None
    shown = {revealed["assignment"]: revealed["tabs"]} if revealed else None
    return _render_setup(request, _setup_cards(request, revealed=shown))


@login_required
@require_http_methods(["GET", "POST"])
@never_cache
@sensitive_variables("config", "texts", "secrets")
def setup_reveal(request: AuthenticatedHttpRequest, assignment_id: int) -> HttpResponse:
    """Reveal or Copy: the card's snippets with the key, recorded as one fetch (JSON for the page's script).

    Without JavaScript the Reveal button posts here and is redirected (303) to My set-up, which shows that card
    revealed once: a reload or Back there is a GET, which fetches and records nothing. A GET of this address
    (from the history, or a page left open from before) is sent to the card on My set-up, masked.
    """
    assignment = my_assignment(request.user, assignment_id)
    if assignment is None:
        raise Http404("No such configuration.")
    card = f"{reverse('setup')}#assignment-{assignment.pk}"
    if request.method != "POST":
        messages.info(request, "Your key is shown only when you press Reveal key; each Reveal counts as a download.")
        return redirect(card)
    purpose = request.POST.get("purpose", "reveal")
    purpose = purpose if purpose in REVEAL_PURPOSES else "reveal"
    wants_json = request.headers.get("Accept", "").startswith("application/json")
    try:
        config = services.usable_config(assignment=assignment, format_name=purpose, request=request)
    except (services.ConfigUnavailable, UnrepresentableValue, DecryptionError) as exc:
        if wants_json:
            return JsonResponse({"detail": str(exc)}, status=409)
        messages.error(request, str(exc))
        return redirect("setup")
    texts = {}
    for tab in guide.TABS:
        try:
            texts[tab.slug] = formats.render(tab.format, config)[0]
        except UnrepresentableValue:
            continue  # that tab keeps its sentence; the others are revealed
    services.record_config_fetch(assignment=assignment, format_name=purpose, request=request)
    note = "Shown with your key; this counts as a download (you can see it under Connections)."
    if wants_json:
        return JsonResponse({"tabs": texts, "note": note})
    secrets = [value.reveal() for value in config.variables.values() if isinstance(value, Secret)]
    handover.keep_shown_once(request, SETUP_REVEALED, {"assignment": assignment.pk, "tabs": texts}, secrets=secrets)
    messages.info(request, note)
    return HttpResponseRedirect(card, status=303)


@login_required
@require_GET  # a HEAD would run the download and count it, delivering nothing
def setup_download(request: AuthenticatedHttpRequest, assignment_id: int, format_name: str) -> HttpResponse:
    assignment = my_assignment(request.user, assignment_id)
    if assignment is None or format_name not in formats.FORMATS:
        raise Http404("No such configuration or format.")
    try:
        text, fmt = services.deliver_config(assignment=assignment, format_name=format_name, request=request)
    except (services.ConfigUnavailable, UnrepresentableValue, DecryptionError) as exc:
        messages.error(request, str(exc))
        return redirect("setup")
    return formats.download_response(
        text, fmt, team_slug=assignment.key.team.slug, gateway_slug=assignment.key.gateway.slug
    )


@login_required
@never_cache  # the page holds a one-time install link
@sensitive_variables("code", "url", "command", "made")
def device_create(request: AuthenticatedHttpRequest, assignment_id: int) -> HttpResponse:
    """Install on a new device: POST makes its one-time install link; the GET it redirects to shows it, once.

    The redirect makes a reload of the install page a GET, which cannot make a second device.
    """
    assignment = my_assignment(request.user, assignment_id)
    if assignment is None:
        raise Http404("No such configuration.")
    if request.method != "POST":
        return _device_install_page(request, assignment)
    form = DeviceForm(request.POST)
    if form.is_valid():
        try:
            device, code = devices.create_device(
                assignment=assignment,
                name=form.cleaned_data["name"],
                platform=form.cleaned_data["platform"],
                actor=request.user,
                request=request,
            )
        except RuleError as exc:
            if exc.field not in form.fields:  # about the configuration (taken back meanwhile), not the form
                messages.error(request, str(exc))
                return redirect("setup")
            add_to_form(form, exc)
    if form.errors:
        # Back on My set-up with what was typed and each sentence at its field, on this configuration's card.
        handover.keep_refused_form(request, form, page=_device_form_page(assignment.pk))
        return redirect(f"{reverse('setup')}#device-name-{assignment.pk}")
    handover.keep_shown_once(request, _install_purpose(assignment), {"device": device.pk, "code": code}, secrets=[code])
    return redirect("device-create", assignment_id=assignment.pk)


def _device_form_page(assignment_id: int) -> str:
    """Where a refused device form is kept for: My set-up, on one configuration's card."""
    return f"{reverse('setup')}#device-{assignment_id}"


def _device_form(request: AuthenticatedHttpRequest, assignment_id: int, platform: str) -> DeviceForm:
    """A card's device form: the refused one kept for it, or an empty one with the browser's system chosen."""
    auto_id = f"device-%s-{assignment_id}"  # one form per card: ids stay apart
    refused = handover.take_refused_form(
        request,
        DeviceForm,
        page=_device_form_page(assignment_id),
        make=lambda data: DeviceForm(data, auto_id=auto_id),
    )
    return refused or DeviceForm(initial={"platform": platform}, auto_id=auto_id)


def _install_purpose(assignment: Assignment) -> str:
    return f"device-install:{assignment.pk}"


@sensitive_variables("code", "url", "command", "made")
def _device_install_page(request: AuthenticatedHttpRequest, assignment: Assignment) -> HttpResponse:
    made = handover.take_shown_once(request, _install_purpose(assignment))
    device = assignment.devices.filter(pk=made["device"]).first() if made else None
    if made is None or device is None:
        messages.info(request, "An install command is shown once. Make a new one below; unused ones expire.")
        return redirect("setup")
    url = devices.install_url(request, made["code"])
    context = {
        "device": device,
        "assignment": assignment,
        "command": devices.install_command(url, device.platform),
        "install_minutes": DEVICE_INSTALL_MINUTES,
    }
    return render(request, "gateways/device_install.html", context)


@login_required
def device_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """My devices: each machine that fetches a key live, when it was last seen, and a button to remove it.

    Removed and never-installed devices stay listed (not a link replaced before its use, which never was on a
    machine), so the list only grows: newest first, a page at a time.
    """
    rows = my_devices(request.user).order_by("-created_at", "-pk")
    page, first_page = page_asked(request, rows, DEVICES_PER_PAGE)
    context = {"devices": page.rows, "first_page": first_page, "next_cursor": page.next_cursor}
    return render(request, "gateways/device_list.html", context)


@login_required
@require_POST
def device_remove(request: AuthenticatedHttpRequest, device_id: int) -> HttpResponse:
    device = device_for_removal(request.user, device_id)
    devices.remove_device(device=device, actor=request.user, request=request)
    messages.success(request, f"{device.name} is removed: its next key fetch is refused.")
    return redirect(local_path(request, request.POST.get("next", "")) or reverse("devices"))


@login_required
def gateway_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(request, "gateways/gateway_list.html", {"gateways": Gateway.objects.all()})


@login_required
def gateway_detail(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    gateway = get_object_or_404(Gateway, slug=slug)
    keys = GatewayKey.objects.visible_to(request.user).filter(gateway=gateway).select_related("team")
    # A revoked key's probes say nothing about the gateway today: the headline and chart leave them out.
    probes = list(
        ProbeResult.objects.visible_to(request.user)
        .filter(gateway=gateway, key__revoked_at__isnull=True)
        .select_related("key")
        .order_by("-created_at")[:50]
    )
    # The headline follows the key table's rule (GatewayKey.current_probe_verdict): a probe from before its
    # key's secret or settings last changed (a new base URL, say) tested something else, so it is left out.
    # A key's newest probe is the one its verdict comes from, so the first with a verdict is the latest that counts.
    latest = next((probe for probe in probes if probe.key.current_probe_verdict), None)
    context = {
        "gateway": gateway,
        "keys": keys,
        "latest": latest,
        "chart": charts.latency_svg(list(reversed(probes))),
        "steps": guide.after_setup_steps(gateway),
    }
    return render(request, "gateways/gateway_detail.html", context)


def _gateway_form_save(request: AuthenticatedHttpRequest, form: GatewayForm, gateway: Gateway | None) -> Gateway | None:
    fields = form.gateway_fields()
    try:
        if gateway is None:
            gateway, notices = services.create_gateway(
                slug=form.cleaned_data["slug"], actor=request.user, request=request, **fields
            )
        else:
            notices = services.update_gateway(
                gateway=gateway,
                changes=fields,
                actor=request.user,
                request=request,
                opened_at=form.cleaned_data["opened_at"],  # the form posts every field back
            )
    except RuleError as exc:
        add_to_form(form, exc)
        return None
    for notice in notices:
        messages.warning(request, notice)
    return gateway


@login_required
@staff_required(CATALOGUE_STAFF_ONLY)
def gateway_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = GatewayForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        gateway = _gateway_form_save(request, form, None)
        if gateway:
            messages.success(request, f"Gateway {gateway.name} added.")
            return redirect("gateway", slug=gateway.slug)
    return render(request, "gateways/gateway_form.html", {"form": form, "gateway": None})


@login_required
@staff_required(CATALOGUE_STAFF_ONLY)
def gateway_edit(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    gateway = get_object_or_404(Gateway, slug=slug)
    initial = {name: getattr(gateway, name) for name in GatewayForm.base_fields}
    initial["opened_at"] = gateway.updated_at  # posted back: a save over a change made since is refused
    form = GatewayForm(request.POST or None, initial=initial, editing=True)
    if request.method == "POST" and form.is_valid() and _gateway_form_save(request, form, gateway):
        messages.success(request, f"Gateway {gateway.name} saved.")
        return redirect("gateway", slug=gateway.slug)
    return render(request, "gateways/gateway_form.html", {"form": form, "gateway": gateway})


def _warned_expired(request: AuthenticatedHttpRequest, key: GatewayKey, saved: str) -> bool:
    """Warn, instead of the usual success, when the key just saved has already expired; say whether it did.

    An expiry typed in the past (a wrong year), or one that passed while the form was open, is saved, but
    nobody's next download uses it: there is none.
    """
    if key.state != KeyState.EXPIRED or not key.expires_at:
        return False
    messages.warning(
        request,
        f"{saved}, but the key expired at {written_time(key.expires_at)}: it yields no set-up and "
        "live devices are refused until you set a later expiry.",
    )
    return True


def _settings_from_form(cleaned: dict) -> dict:
    return {name: cleaned[name] for name in KEY_SETTING_FIELDS if name in cleaned}


@login_required
@sensitive_post_parameters("secret")
def key_create(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    team, _ = team_with_role(request.user, slug, Role.ADMIN)
    form = KeyCreateForm(request.POST or None, initial={"gateway": request.GET.get("gateway")})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            key = services.store_key(
                team=team,
                gateway=data["gateway"],
                secret=data["secret"],
                actor=request.user,
                request=request,
                **_settings_from_form(data),
            )
        except RuleError as exc:
            add_to_form(form, exc)
        else:
            if not _warned_expired(request, key, f"Key {key.label} stored as {key.masked}"):
                messages.success(request, f"Key {key.label} stored as {key.masked}. Assign it to members below.")
            return redirect("key", key_id=key.id)
    context = {
        "form": form,
        "team": team,
        "key": None,
        # Every gateway's hint, each named: without JavaScript the select can change and the right one is there;
        # app.js shows only the chosen gateway's.
        "hints": [(g.slug, g.name, g.console_hint) for g in Gateway.objects.all() if g.console_hint],
    }
    return render(request, "gateways/key_form.html", context)


@login_required
def key_detail(request: AuthenticatedHttpRequest, key_id) -> HttpResponse:
    key, role = key_with_role(request.user, key_id)
    return _render_key_page(request, key, role)


def _render_key_page(
    request: AuthenticatedHttpRequest,
    key: GatewayKey,
    role: str | None,
    assign_refused: tuple[str, str] | None = None,
    settings_refused: KeySettingsForm | None = None,
) -> HttpResponse:
    """The key page; `assign_refused` is (the name picked, the sentence why) when Assign was just refused, and
    `settings_refused` the settings form as posted, with its errors, when Save was."""
    is_admin = role == Role.ADMIN
    probes = list(key.probes.select_related("started_by").order_by("-created_at")[:50])
    initial = {name: getattr(key, name) for name in KeySettingsForm.base_fields}

    def query_without(name: str) -> str:
        """The page's query string less one parameter: each list's page links keep the other list's page."""
        params = request.GET.copy()
        params.pop(name, None)
        return params.urlencode()

    # Assignees and devices a page at a time (?assignees_page=, ?devices_page=): a team of hundreds, or one
    # member's loop of installs, would make the page the admin needs to rotate or revoke the key unusable.
    context = {
        "key": key,
        "is_admin": is_admin,
        "assignments": page_of(key_assignees(key), request.GET.get("assignees_page")),
        "assignees_query": query_without("assignees_page"),
        "assign_form": AssignForm(members=assignable_usernames(key) if is_admin else ()),
        "assign_picked": assign_refused[0] if assign_refused else "",
        "assign_error": assign_refused[1] if assign_refused else "",
        "settings_form": settings_refused or KeySettingsForm(initial=initial),
        "gateway_name": key.gateway.name,
        "probes": probes[:10],
        "chart": charts.latency_svg(list(reversed(probes))),
        "devices": page_of(key_devices(key), request.GET.get("devices_page")),
        "devices_query": query_without("devices_page"),
        "rollout": devices.rollout(key),
        "copies_out": devices.copies_out(key),
    }
    refused = assign_refused or settings_refused
    return render(request, "gateways/key_detail.html", context, status=400 if refused else 200)


@login_required
@require_POST
def key_settings(request: AuthenticatedHttpRequest, key_id) -> HttpResponse:
    """Save what was changed on the form; a refusal shows the key page again with what was typed and why."""
    key, role = key_with_role(request.user, key_id, Role.ADMIN)
    form = KeySettingsForm(request.POST)
    if not form.is_valid():
        return _render_key_page(request, key, role, settings_refused=form)
    # Only what was changed on this page (against the values it showed): another admin's save since stays.
    changes = {k: v for k, v in _settings_from_form(form.cleaned_data).items() if k in form.changed_data}
    if not changes:
        messages.info(request, NOTHING_CHANGED)
        return redirect("key", key_id=key.id)
    try:
        key = services.update_key_settings(key=key, changes=changes, actor=request.user, request=request)
    except RuleError as exc:
        add_to_form(form, exc)
        return _render_key_page(request, key, role, settings_refused=form)
    if not _warned_expired(request, key, "Key settings saved"):
        messages.success(request, "Key settings saved; developers' next downloads use them.")
    return redirect("key", key_id=key.id)


@login_required
@sensitive_post_parameters("secret")
def key_rotate(request: AuthenticatedHttpRequest, key_id) -> HttpResponse:
    key, _ = key_with_role(request.user, key_id, Role.ADMIN)
    if needs_password := sudo_redirect(request):
        return needs_password
    form = RotateForm(request.POST or None, initial={"expires_at": key.expires_at})
    if request.method == "POST" and form.is_valid():
        try:
            key = services.rotate_key_secret(
                key=key,
                secret=form.cleaned_data["secret"],
                expires_at=form.cleaned_data["expires_at"] if "expires_at" in form.changed_data else ...,
                actor=request.user,
                request=request,
            )
        except RuleError as exc:
            add_to_form(form, exc)
        else:
            if not _warned_expired(request, key, f"Secret rotated (the key is now {key.masked})"):
                after = devices.rotation_sentence(devices.rollout(key))
                messages.success(request, f"Secret rotated; the key is now {key.masked}. {after}.")
            return redirect("key", key_id=key.id)
    context = {"form": form, "key": key, "after_rotation": devices.rotation_sentence(devices.rollout(key))}
    return render(request, "gateways/key_rotate.html", context)


@login_required
@require_POST
def key_toggle(request: AuthenticatedHttpRequest, key_id) -> HttpResponse:
    """Enable or disable as the button pressed says (enabled=1|0), never the opposite of the state now:
    a second admin pressing Disable on a page opened before the first press would enable the key again."""
    key, _ = key_with_role(request.user, key_id, Role.ADMIN)
    wanted = {"1": True, "0": False}.get(request.POST.get("enabled", ""))
    if wanted is None:
        messages.error(
            request,
            "This form does not say whether to enable or disable the key: reload the page and press the button again.",
        )
        return redirect("key", key_id=key.id)
    state = "enabled" if wanted else "disabled"
    if key.is_enabled == wanted:
        messages.info(request, f"The key was already {state}; nothing changed.")
        return redirect("key", key_id=key.id)
    try:
        # Under the key's lock the service changes nothing if someone else pressed the same button meanwhile.
        services.set_key_enabled(key=key, enabled=wanted, actor=request.user, request=request)
    except RuleError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Key {state}.")
    return redirect("key", key_id=key.id)


@login_required
@require_POST
def key_revoke(request: AuthenticatedHttpRequest, key_id) -> HttpResponse:
    key, _ = key_with_role(request.user, key_id, Role.ADMIN)
    if needs_password := sudo_redirect(request, purpose=f"revoke the key {key.label!r}"):
        return needs_password
    static = devices.copies_out(key)
    key = services.revoke_key(key=key, actor=request.user, request=request)
    said = "Key revoked: its secret is destroyed and it yields no configuration any more."
    if static:
        # The portal destroys its own copy only: a downloaded or shown one still works until the gateway drops it.
        gateway = key.gateway.name
        said += f" {devices.developers_holding(static)} a static copy that {gateway} still accepts: "
        said += f"delete or disable the key in the {gateway} console."
    messages.success(request, said)
    return redirect("key", key_id=key.id)


@login_required
@require_POST
def key_assign(request: AuthenticatedHttpRequest, key_id) -> HttpResponse:
    """Assign the key; a refusal shows the key page again with the name picked and the reason under it."""
    key, role = key_with_role(request.user, key_id, Role.ADMIN)
    username = request.POST.get("username", "").strip()  # typed, past AssignForm.PICK_FROM_AT_MOST names
    if not username:
        sentence = f"Choose or type the user name of a member of {key.team.name} to assign the key to."
        return _render_key_page(request, key, role, assign_refused=(username, sentence))
    try:
        services.assign_key(key=key, username=username, actor=request.user, request=request)
    except RuleError as exc:
        return _render_key_page(request, key, role, assign_refused=(username, str(exc)))
    messages.success(request, f"Assigned to {username}.")
    return redirect("key", key_id=key.id)


@login_required
@require_POST
def assignment_remove(request: AuthenticatedHttpRequest, assignment_id: int) -> HttpResponse:
    """As DELETE /api/v1/assignments/{id}/: 404 unless visible (one's own is), 403 unless the team's admin."""
    assignment = get_object_or_404(
        Assignment.objects.visible_to(request.user).select_related("key__team", "key__gateway", "user"),
        pk=assignment_id,
    )
    require_role(request.user, assignment.key.team, Role.ADMIN, denied=ASSIGNMENT_REMOVAL_DENIED)
    services.remove_assignment(assignment=assignment, actor=request.user, request=request)
    messages.success(request, f"{assignment.user.username} no longer has this key.")
    return redirect("key", key_id=assignment.key_id)


@login_required
@require_POST
def key_probe(request: AuthenticatedHttpRequest, key_id) -> HttpResponse:
    """Run a probe now; answers JSON for the page's button, or redirects without JavaScript."""
    from gateways.probes.runner import probe_key

    key, _ = key_with_role(request.user, key_id, Role.ADMIN)
    result = probe_key(key, trigger="web", user=request.user, request=request)
    if request.headers.get("Accept", "").startswith("application/json"):
        return JsonResponse(
            {
                "verdict": result.verdict,
                "verdict_label": result.get_verdict_display(),
                "status_code": result.status_code,
                "latency_ms": result.latency_ms,
                "hint": result.hint,
                "warning": result.warning,
            }
        )
    level = messages.SUCCESS if result.verdict == "ok" else messages.ERROR
    messages.add_message(request, level, f"Probe: {result.get_verdict_display()}. {result.hint}")
    return redirect("key", key_id=key.id)


@login_required
def team_detail(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """A team's page: its keys (for admins and auditors) and its members; here because it lists keys.

    `?state=failing|expiring|unused` narrows the keys to a dashboard section; `?q=` and `?page=` the members.
    """
    team, role = team_with_role(request.user, slug)
    overseer = role in (Role.ADMIN, Role.AUDITOR)
    hide_revoked = request.GET.get("revoked") == "hide"
    # ?state= narrows the keys to a dashboard section (failing, expiring, unused): its "N more" links here.
    state = request.GET.get("state", "")
    if state not in ("", *dashboard.KEY_STATES):
        messages.error(request, f"state must be one of {', '.join(dashboard.KEY_STATES)}; showing every key.")
        state = ""
    every_key = team.keys.select_related("gateway").prefetch_related("assignments__user")
    # A section's keys come in the dashboard's order, so its first rows come first.
    keys = dashboard.keys_in_state(every_key, state) if state else every_key.order_by(ReadingOrder("label"), "label")
    if hide_revoked:
        keys = keys.filter(revoked_at__isnull=True)
    key_rows = list(keys) if overseer else []
    failing = [k for k in key_rows if k.is_failing]
    if overseer and state not in ("", "failing"):  # the filter left them out of the table, not out of the warning
        failing = list(dashboard.failing_keys(team.keys.select_related("gateway")))
    # Members a page at a time, searched by user name (?q=, ?page=), as on /users/: the forms above the table
    # stay within reach in a team of hundreds.
    query = request.GET.get("q", "").strip()[:150]

    def link(**changes: str | None) -> str:
        """This page's query string without its page number, with `changes` (None: left out): links keep the rest."""
        params = request.GET.copy()
        params.pop("page", None)
        params.pop("q", None)
        if query:
            params["q"] = query  # as searched: trimmed
        for name, value in changes.items():
            params.pop(name, None)
            if value is not None:
                params[name] = value
        return params.urlencode()

    context = {
        "team": team,
        "role": role,
        "is_admin": role == Role.ADMIN,
        "memberships": page_of(team_members(team, query), request.GET.get("page")),
        "query": query,
        "members_query": link(),
        "every_member_query": link(q=None),
        "keys": key_rows,
        "hide_revoked": hide_revoked,
        "revoked_query": link(revoked=None if hide_revoked else "hide"),
        "state": state,
        "state_title": dashboard.key_state_title(state) if state else "",
        "every_key_query": link(state=None),
        "failing": failing,
        "member_form": handover.take_refused_form(request, MemberForm, page=request.path) or MemberForm(),
        "roles": Role.choices,
        "gateways": Gateway.objects.all(),
    }
    return render(request, "gateways/team_detail.html", context)


# The connections table's headers: (label, sort name or None, the direction a first click sorts in).
CONNECTION_COLUMNS = (
    ("Developer", "user", ""),
    ("Team", "team", ""),
    ("Gateway", "gateway", ""),
    ("Key", None, ""),
    ("Assigned since", "assigned", "-"),
    ("Last download", "last_download", "-"),
    ("Live devices", None, ""),
    ("Latest probe", "verdict", ""),
    ("Expires", "expiry", ""),
)
ARIA_SORT = {"": "ascending", "-": "descending"}


def _sortable_columns(current: str, query: str) -> list[dict]:
    """Each header with its link (a second click reverses the order) and its aria-sort when it is the sort."""
    columns = []
    for label, name, first in CONNECTION_COLUMNS:
        column = {"label": label, "href": "", "aria_sort": ""}
        if name:
            direction = current[: len(current) - len(name)] if current.removeprefix("-") == name else None
            if direction is not None:
                column["aria_sort"] = ARIA_SORT[direction]
            following = ("" if direction == "-" else "-") if direction is not None else first
            column["href"] = f"?{query}{'&' if query else ''}sort={following}{name}"
        columns.append(column)
    return columns


def _with_devices(request: AuthenticatedHttpRequest, row: dict, shown: list) -> dict:
    """A connections row with the devices it names, and how many more there are and where they are listed.

    One's own devices are under My devices; a holder's, on the key's page, which their overseer can open.
    """
    more = row["live_devices"] - len(shown)
    mine = row["user"] == request.user.get_username()
    more_url = reverse("devices") if mine else f"{reverse('key', args=[row['key_id']])}#live-devices"
    return {**row, "devices": shown, "more_devices": max(more, 0), "more_devices_url": more_url}


@login_required
def connection_list(request: AuthenticatedHttpRequest) -> HttpResponseBase:
    """Who is connected where (gateways.connections), a page of rows at a time (keyset: `?cursor=`), or all as CSV."""
    filter_error = ""
    try:
        filters = ConnectionFilters.from_query(request.GET)
    except RuleError as exc:
        filter_error = str(exc)
        filters = ConnectionFilters()
    rows = connections_for(request.user, filters)
    export = request.GET.get("export") == "csv"
    if export and not filter_error:
        return connections_csv(rows)
    if filter_error:
        # The page shows the defaults with the rule; an export of the defaults would hold rows the filters
        # left out (another team's), so it is refused, as on the audit page.
        messages.error(request, f"Nothing was exported: {filter_error}" if export else filter_error)
    page, first_page = page_asked(request, rows, CONNECTIONS_PER_PAGE)
    # The links carry the filters the page shows: a filter it set aside, or the export it refused, would
    # lead every link (sort, Next, CSV) to the same refusal again.
    query = QueryDict(mutable=True)
    query.update({name: value for name in ("team", "gateway", "user", "state") if (value := getattr(filters, name))})
    live = live_devices_by_assignment(page.rows)
    context = {
        "columns": _sortable_columns(filters.sort, query.urlencode()),
        "rows": [_with_devices(request, row, live.get(row["assignment"], [])) for row in connection_rows(page.rows)],
        "first_page": first_page,
        "next_cursor": page.next_cursor,
        "filters": filters,
        "states": STATES,
        "teams": Team.objects.visible_to(request.user),
        "gateways": Gateway.objects.all(),
        "query": query.urlencode(),
    }
    return render(request, "gateways/connection_list.html", context, status=400 if export and filter_error else 200)


@login_required
def home(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Team admins and staff start on the dashboard; everyone else on My set-up."""
    return redirect("dashboard" if administers_a_team(request.user) else "setup")


@login_required
def dashboard_page(request: AuthenticatedHttpRequest) -> HttpResponse:
    """What needs attention in the teams the user administers, each row linking to where it is fixed."""
    if not administers_a_team(request.user):
        raise PermissionDenied("The dashboard is for team admins and staff. Your set-up is under My set-up.")
    sections = dashboard.dashboard_for(request.user)
    # A quiet dashboard may be a fresh portal: then the steps to a first set-up come first.
    checklist = None if any(s.total for s in sections) else first_run_checklist(request.user)
    return render(request, "gateways/dashboard.html", {"sections": sections, "checklist": checklist})
