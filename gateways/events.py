"""Signals gateways sends when something happens to a key, for the apps built on it (alerts).

Each is sent inside the transaction of the change (self_assigned: once it is committed), so a receiver's rows (a notification to
deliver) are committed with the change or not at all. gateways never imports those apps.
"""

from __future__ import annotations

from django.dispatch import Signal

# `key=`, `actor=`: the key's secret was replaced; holders who downloaded it before have the old one.
key_rotated = Signal()
# `key=`, `actor=`: the key was revoked (its secret destroyed); its holders must switch to another key.
key_revoked = Signal()
# `key=`: the key's expiry passed (sent once per expiry, by record_expirations).
key_expired = Signal()
# `key=`, `previous=` (the verdict before, "" when never probed), `result=` (the ProbeResult just saved).
probe_recorded = Signal()
# `assignment=`, `recipients=` (users), `subject=`, `text=`: an admin gave a key to themselves; the others must hear.
self_assigned = Signal()
