# koosim in a container: the CLI as the entry point, run as an unprivileged user.
#   docker build -t koosim .
#   docker run --rm koosim verify                      # the bundled reference merchant, inside
#   docker run --rm -e KOOSIM_SERVE_TOKEN -p 8000:8000 koosim serve --host 0.0.0.0 --port 8000
# docs/docker.md explains the rest; scripts/docker-smoke.sh builds and checks this image.
# No key, token or other secret belongs in this file or in the image: pass them with -e at run time.

# Stage 1: build the wheel (contracts and scenarios go inside it) from the sources only.
FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY simulator/ simulator/
COPY contracts/ contracts/
COPY scenarios/ scenarios/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

# Stage 2: the runtime: the wheel and its dependencies, no build tools, no sources.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=wheel /dist/ /tmp/dist/
RUN pip install --no-cache-dir /tmp/dist/*.whl \
    && rm -rf /tmp/dist \
    && useradd --create-home --uid 10001 --user-group koosim
USER koosim
# The run history (.koosim/koosim.db) goes here; mount a volume on it to keep it.
WORKDIR /home/koosim
EXPOSE 8000
ENTRYPOINT ["koosim"]
CMD ["--help"]
