# One image for every passnum process (setup job, issuer, redeemer, auditor); the command
# comes from docker-compose.yml.
FROM python:3.11-slim

# No .pyc files in a read-mostly image, logs straight to `docker logs`, no pip cache layers.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package is built from, so that a local .venv or .git never enters the image.
WORKDIR /src
COPY pyproject.toml ./
COPY passnum ./passnum
COPY schemas ./schemas
COPY services ./services
# Everything runs from the installed distribution, not from /src: `faust -A
# services.issuer.app` and the SQL migrations must therefore be part of the package.
RUN pip install . && rm -rf /src

# The workers need no privilege. Their home is also the working directory because faust
# keeps its table state in ./<app id>-data and Settings.run_directory is ~/.passnum: both
# must be writable by this user, and nothing else is.
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/passnum passnum
USER passnum
WORKDIR /var/lib/passnum

CMD ["passnum", "--help"]
