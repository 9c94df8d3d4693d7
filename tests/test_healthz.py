"""/healthz answers without the database, so a load balancer can tell the process is up."""

from __future__ import annotations


def test_healthz_answers_ok_without_touching_the_database(client):
    # No django_db mark: any query would fail this test with "Database access not allowed".
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
