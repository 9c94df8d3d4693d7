"""Project middleware: health checks answered first, no body past DATA_UPLOAD_MAX_MEMORY_SIZE read, no NUL
character in a URL, no signed-in page kept by a cache, keys kept in reach of redaction, and a device's key fetch and the API's token requests answered
before the page machinery; a form sent after the session ended is not dropped without a word, nor is a form's address
opened as a page answered with an empty 405."""

from __future__ import annotations

import functools
import json
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import TooManyFieldsSent
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponsePermanentRedirect,
    JsonResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import resolve_url
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve
from django.utils.cache import add_never_cache_headers
from rest_framework.views import APIView

from config.views import HEALTH_VIEWS, bad_request
from gateways.api.views import device_key
from portal.crypto import secrets_scope
from portal.http import local_path


class HealthCheckMiddleware:
    """Answer /healthz and /readyz before any other middleware.

    A load balancer or `docker HEALTHCHECK` asks over plain HTTP with the container's address as
    host: the host check (ALLOWED_HOSTS) and SECURE_SSL_REDIRECT would refuse or redirect it, and
    sessions, CSRF and the sign-in lock-out have nothing to do with it. These answers build no URL.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = HEALTH_VIEWS.get(request.path_info)
        if view is not None and request.method in ("GET", "HEAD"):
            return view(request)
        return self.get_response(request)


class RequestBodyLimitMiddleware:
    """Refuse a body whose Content-Length is past DATA_UPLOAD_MAX_MEMORY_SIZE before anything reads it (413).

    Django's own limit leaves out a multipart body's file parts, and CSRF reads request.POST on every page, so an
    anonymous POST with a file part of any size was read in full. No page or API takes a file (FILE_UPLOAD_HANDLERS
    is empty, so a file part within the limit is read and dropped, never written to disk). A body sent without a
    Content-Length (chunked) is one Django reads none of.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0  # as Django reads it: no body
        if limit is None or length <= limit:
            return self.get_response(request)
        sentence = (
            f"The request body is larger than {limit // 1024} KiB, the most the portal accepts. "
            "Nothing here takes a file or comes near that; check what is being sent."
        )
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": sentence}, status=413)
        return HttpResponse(sentence, status=413, content_type="text/plain; charset=utf-8")


class PrivatePagesMiddleware:
    """Whatever is answered to a browser holding a session is kept by no cache, the back/forward cache included.

    On a shared computer, Back after signing out brought a page back whole, with the password or gateway key
    typed into its fields, unless it was served `no-store` (Chromium keeps no such page). Static files are
    answered before this (whitenoise), and a device's or a script's token request carries no session cookie.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if settings.SESSION_COOKIE_NAME in request.COOKIES and "no-store" not in response.get("Cache-Control", ""):
            add_never_cache_headers(response)
        return response


MESSAGE = "The address contains a NUL character (%00), which no name or filter here can hold. Remove it."


class RejectNulCharactersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            query = request.GET
        except TooManyFieldsSent as exc:
            # Answered here, as handler400 would: with DEBUG on, Django's error page reads request.GET again and
            # turns the refusal into a 500.
            return bad_request(request, exc)
        if "\x00" in request.path or any("\x00" in k or any("\x00" in v for v in query.getlist(k)) for k in query):
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": MESSAGE}, status=400)
            return HttpResponseBadRequest(MESSAGE, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


class SecretsScopeMiddleware:
    """Every key revealed while a request runs stays known to the error page and the logs until it ends.

    A rendered config outlives the Secret it came from; if the view fails after that, the error
    page (portal.redaction) can still tell the key's text apart and remove it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with secrets_scope():
            return self.get_response(request)


# Where config.urls mounts the API.
API_PREFIX = "/api/v1/"
# The path of GET /api/v1/device/key.
DEVICE_KEY_PATH = f"{API_PREFIX}device/key"


class DeviceKeyMiddleware:
    """Answer a device's key fetch before sessions, CSRF, sign-in, two-factor, messages and lock-outs.

    The fetch runs on every developer's machine every few minutes and carries its own credential
    (a device token): the page middleware after this one has nothing to do with it and cost more
    than the fetch itself (README, "Live keys"). It sits after the security middleware (HTTPS
    redirect, HSTS, nosniff), the secrets' redaction scope and the NUL check, and the host is
    checked as for any request.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info != DEVICE_KEY_PATH:
            return self.get_response(request)
        request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it for every other request
        return device_key(request)


def _takes(match, method: str) -> bool | None:
    """Whether a resolved view takes this method; None for a plain function view, which does not say."""
    view_class = getattr(match.func, "view_class", None)
    return None if view_class is None else hasattr(view_class, method.lower())


def api_slash_redirect(request: HttpRequest) -> HttpResponse | None:
    """A 308 to the API address with its trailing slash, for a write sent to it without one.

    CommonMiddleware's APPEND_SLASH answers a POST, PUT or PATCH with a 500 page under DEBUG and
    otherwise with a 301, which clients follow as a GET: the write was lost. A 308 keeps the method
    and the body. A GET keeps APPEND_SLASH's 301, which loses nothing. A path that resolves without
    the slash is redirected only if its view refuses the method and the slashed one takes it, as a
    POST to me/configs/{id}/devices, which would be a download of the format "devices".
    """
    path, method = request.path_info, request.method or ""
    if not (path + "/").startswith(API_PREFIX) or path.endswith("/") or method in ("GET", "HEAD"):
        return None
    try:
        slashed = resolve(path + "/")
    except Resolver404:
        return None
    try:
        match = resolve(path)
    except Resolver404:
        pass
    else:
        if _takes(match, method) is not False or not _takes(slashed, method):
            return None
    request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it for every other request
    location = request.get_full_path(force_append_slash=True)
    body = json.dumps({"detail": f"API addresses end with a slash: send this {method} to {location}."})
    return HttpResponsePermanentRedirect(location, preserve_request=True, content=body, content_type="application/json")


@functools.cache
def _answers_without_pages(view_class) -> bool:
    """Whether a view is a DRF view that never renders a page (HTML)."""
    if view_class is None or not issubclass(view_class, APIView):
        return False
    return all(renderer.media_type != "text/html" for renderer in view_class.renderer_classes)


class TokenApiMiddleware:
    """Send an API request that carries an access token straight to its view, past the page machinery.

    A request with `Authorization: Bearer` and no session cookie is authenticated by its token
    (portal.authentication), which either accepts it or answers 401, never falling back to a
    session. So the middleware after this one has nothing to do with it: sessions and sign-in
    find no cookie, CSRF does not apply to a DRF view, two-factor holds back sessions only,
    messages and the sign-in lock-out do not concern the API, and CSP and X-Frame-Options protect
    pages, not JSON and downloads (a view that can render HTML, as the API's docs, takes the usual
    way). Skipping them took a config download, the API's most frequent request, from 2.7 to
    1.75 ms in-process (docs/benchmarks.md).

    Like DeviceKeyMiddleware, it sits after the security middleware, the secrets' redaction scope
    and the NUL check, and checks the host. Whatever does not resolve to a DRF view, or carries a
    session cookie, takes the usual way, so a trailing-slash redirect or a page's 404 stay as they were;
    but first, with a token or without, an API write sent without its trailing slash gets a 308 to the
    address with it (api_slash_redirect), before CommonMiddleware could lose it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if (redirect := api_slash_redirect(request)) is not None:
            return redirect
        if (
            not request.path_info.startswith(API_PREFIX)
            or request.META.get("HTTP_AUTHORIZATION", "")[:7].lower() != "bearer "
            or settings.SESSION_COOKIE_NAME in request.COOKIES
        ):
            return self.get_response(request)
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return self.get_response(request)
        if not _answers_without_pages(getattr(match.func, "view_class", None)):
            return self.get_response(request)
        request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it for every other request
        request.resolver_match = match
        request.user = AnonymousUser()  # until the token is read; as AuthenticationMiddleware leaves it
        response = match.func(request, *match.args, **match.kwargs)
        if callable(getattr(response, "render", None)):
            response = response.render()  # a DRF Response is rendered late, as the handler would
        return response


SIGNED_OUT_BEFORE_SENT = (
    "You were signed out before this form was sent, so nothing was saved. Sign in, then send it again."
)


class SignedOutFormMiddleware:
    """Say on the sign-in page that a page's form, posted after the session ended, was not saved.

    login_required answers such a POST with a redirect to the sign-in page (`?next=` the form's page), which said
    only "Sign in", and after it the person found the form empty. It sits after MessageMiddleware, so the message
    is kept for that page. A sign-out's own redirect names no `next`, and the API answers 401/403 itself.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if (
            request.method == "POST"
            and not request.path.startswith("/api/")
            and response.status_code == 302
            and response.get("Location", "").startswith(f"{resolve_url(settings.LOGIN_URL)}?next=")
            and not request.user.is_authenticated
        ):
            messages.warning(request, SIGNED_OUT_BEFORE_SENT)
            # Back to the form's page after signing in, not to the address it posts to (a GET there is a 405).
            if page := form_page(request):
                response["Location"] = f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': page})}"
        return response


def form_page(request: HttpRequest) -> str:
    """The page a posted form was on: the `next` it names, else the Referer, when either is a path of this site."""
    if page := local_path(request, request.POST.get("next", "")):
        return page
    referer = urlsplit(request.META.get("HTTP_REFERER", ""))
    if referer.netloc != request.get_host():
        return ""
    return local_path(request, referer.path + (f"?{referer.query}" if referer.query else ""))


class MethodNotAllowedPageMiddleware:
    """Give a page's empty 405 (require_POST, a class view's refused method) a sentence and a way back.

    Opened from the history, a bookmark or the address bar, a form's address answered an empty page that the
    browser shows as its own error. The Allow header stays; the API answers its own 405s (JSON), and an answer
    that already says something (a device's install script, in plain text) is left as it is.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if (
            response.status_code != 405
            or request.path.startswith("/api/")
            or response.streaming
            or response.content
            or not response.get("Content-Type", "").startswith("text/html")
        ):
            return response
        response.content = render_to_string("405.html", {"back": form_page(request)}, request=request)
        if response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))
        return response
