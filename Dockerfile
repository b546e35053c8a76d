# syntax=docker/dockerfile:1
# One image for every passnum process (setup job, issuer, redeemer, auditor); the command
# comes from docker-compose.yml. Two stages: `build` has a C compiler and builds the wheel,
# the auditor's compiled fold (services/auditor/_plain_records.c, setup.py) included, into a
# virtual environment; the runtime stage copies that environment and has no compiler.
# tests/unit/test_image_build.py builds the wheel the way the build stage does and imports
# the compiled module from the installed layout.

FROM python:3.11-slim AS build

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# gcc and the C library headers compile the fold; with OpenSSL's headers it hashes with
# libcrypto (setup.py), which the runtime image already has for Python's ssl module.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# The dependencies first, from the locks alone, so that a change of code reuses this layer.
# Every file is checked against its hash (requirements.lock: the runtime dependencies with
# all indirect ones; build-requirements.lock: what builds the wheel; scripts/lock writes both).
COPY requirements.lock build-requirements.lock ./
RUN python -m venv /opt/passnum \
 && /opt/passnum/bin/pip install --require-hashes -r requirements.lock \
 && pip install --require-hashes -r build-requirements.lock

# Only what the package is built from (.dockerignore keeps out anything built on the host).
COPY pyproject.toml setup.py README.md ./
COPY passnum ./passnum
COPY schemas ./schemas
COPY services ./services
# --no-build-isolation: built with the locked setuptools and wheel above. setup.py marks the
# extension optional, so the last command fails the build if the fold did not compile
# (from /, so that /src/services cannot stand in for the installed package).
RUN pip wheel . --no-deps --no-build-isolation --wheel-dir /wheels \
 && /opt/passnum/bin/pip install --no-deps /wheels/passnum-*.whl \
 && /opt/passnum/bin/pip check \
 && cd / && /opt/passnum/bin/python -c "import services.auditor._plain_records"

FROM python:3.11-slim

# No .pyc files in a read-mostly image, logs straight to `docker logs`.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/passnum/bin:$PATH

# The same base image, so the environment's interpreter links resolve as in `build`.
COPY --from=build /opt/passnum /opt/passnum

# The workers need no privilege. Their home is also the working directory because faust
# keeps its table state in ./<app id>-data and Settings.run_directory is ~/.passnum: both
# must be writable by this user, and nothing else is.
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/passnum passnum
USER passnum
WORKDIR /var/lib/passnum

CMD ["passnum", "--help"]
