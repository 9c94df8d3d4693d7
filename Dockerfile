# The portal behind gunicorn, static files served by whitenoise, configured from the environment.
# Run: docker run -p 8000:8000 -e SECRET_KEY=... -e ALLOWED_HOSTS=portal.example.com \
#        -e PORTAL_ENCRYPTION_KEYS=... -e PORTAL_AUDIT_KEYS=... -e DATABASE_URL=postgres://... -v portal-data:/data IMAGE
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEBUG=False \
    DATABASE_CONN_MAX_AGE=60 \
    PORTAL_DATA_DIR=/data \
    STATIC_ROOT=/app/staticfiles

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY manage.py ./
COPY config ./config
COPY portal ./portal
COPY gateways ./gateways
COPY alerts ./alerts
COPY templates ./templates
COPY static ./static

# collectstatic imports the settings, which insist on a secret and keyrings when DEBUG is off:
# throwaway values that exist only during this build step. The database in memory: the settings would
# otherwise create /data/portal.sqlite3 as root, 0600, which the portal's user could not open at start.
RUN SECRET_KEY=collectstatic-only ALLOWED_HOSTS=collectstatic-only DATABASE_URL=sqlite:///:memory: \
    PORTAL_ENCRYPTION_KEYS=$(python -c "import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())") \
    PORTAL_AUDIT_KEYS=$(python -c "import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())") \
    python manage.py collectstatic --noinput \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin portal \
 && mkdir -p /data && chown portal /data

USER portal
EXPOSE 8000
# Liveness: /healthz answers without the database, asked where BIND listens (slim has no curl; see
# config/healthcheck.py). Load balancers ask /readyz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-m", "config.healthcheck"]
# Workers, threads and their reasons: config/gunicorn.conf.py (WEB_CONCURRENCY, WEB_THREADS).
# A blank WEB_CONCURRENCY (an env file's empty line) means its default, as for every setting; gunicorn reads
# the variable itself before its config file and would stop on it, so it is unset first.
CMD ["sh", "-c", "python manage.py migrate --noinput && { [ -n \"$(printf %s \"$WEB_CONCURRENCY\" | tr -d ' \\t')\" ] || unset WEB_CONCURRENCY; } && exec gunicorn -c config/gunicorn.conf.py config.wsgi"]
