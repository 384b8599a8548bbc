# syntax=docker/dockerfile:1
# The Incidents image: `docker build -t incidents .` at the top of the repository.
# It runs `incidents serve` as an unprivileged user; other commands (`worker`,
# `admin migrate`, `admin backup`) replace the CMD. See docs/deployment.md.
ARG PYTHON_VERSION=3.12

# --- build: the project and every dependency as wheels --------------------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --wheel-dir /wheels .

# --- runtime: the wheels installed, no compilers, no pip cache, no root ----------
FROM python:${PYTHON_VERSION}-slim AS runtime
LABEL org.opencontainers.image.title="incidents" \
      org.opencontainers.image.description="Self-hostable incident management on a tamper-evident CloudEvents timeline" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IM_HOST=0.0.0.0 \
    IM_PORT=8080 \
    IM_DATABASE_URL=sqlite:////var/lib/incidents/incidents.db
RUN groupadd --system --gid 10001 incidents \
    && useradd --system --uid 10001 --gid incidents --home-dir /var/lib/incidents \
       --shell /usr/sbin/nologin incidents \
    && install -d -o incidents -g incidents -m 0750 /var/lib/incidents
# The wheels are mounted, not copied: they add no layer to the image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/wheels incidents
# Numeric, so Kubernetes' runAsNonRoot can check it without looking up the name.
USER 10001:10001
WORKDIR /var/lib/incidents
EXPOSE 8080
# SIGTERM drains: open requests finish, queued appends commit, the outbox is handed on.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-m", "incidents.probe", "healthz"]
ENTRYPOINT ["incidents"]
CMD ["serve"]
