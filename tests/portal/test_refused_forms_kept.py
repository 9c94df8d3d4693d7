"""A refused form is kept for the next page through the session: what is kept is bounded, whatever was posted."""

from __future__ import annotations

import random
import string

import pytest
from django.contrib.sessions.models import Session

pytestmark = pytest.mark.django_db

# Incompressible, and under DATA_UPLOAD_MAX_MEMORY_SIZE (1 MiB): Django reads the whole form.
TYPED = "".join(random.Random(24).choices(string.ascii_letters, k=1_000_000))


def test_a_refused_device_name_is_not_kept_whole_in_the_session(client, bob, bob_assignment):
    client.force_login(bob)
    response = client.post(f"/setup/{bob_assignment.pk}/devices/", {"name": TYPED, "platform": "linux"})
    assert response.status_code == 302
    stored = Session.objects.get(session_key=client.session.session_key).session_data
    # The name's limit is 100 characters: what is kept for the page to show again needs no more than a few times that.
    assert len(stored) < 20_000, f"the session row holds {len(stored):,} characters after one refused device form"
    page = client.get("/setup/")
    assert "at most 100 characters" in page.content.decode()  # the sentence still says what was wrong
    assert len(page.content) < 500_000, f"My set-up is {len(page.content):,} bytes: the refused name came back whole"
