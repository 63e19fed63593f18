# One image for the three services; the command picks one:
#   docker run IMAGE router_svc | cache_svc | embed_svc   (each takes --help)
# The build stage runs the same make target as CI (`make model`), so the model in the image is
# built by the tested recipe. No Docker engine runs in CI: docs/deploy.md says what is checked.

FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ make \
    && rm -rf /var/lib/apt/lists/*
# HNSWLIB_NO_NATIVE: hnswlib is compiled without -march=native, so the image runs on any
# x86-64 node, not only on CPUs like the build machine's. (x86-64 only: some dev tools
# `make model` installs ship no arm64 wheels.)
ENV HNSWLIB_NO_NATIVE=1 \
    SEMCACHE_CACHE_DIR=/build/cache \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
# The PyTorch CPU index, for this step only: `torch==2.13.0` then resolves to 2.13.0+cpu,
# not the CUDA build; the runtime wheels below come from PyPI alone.
RUN PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu make model \
    && cp -r "$(.venv/bin/python -m embed_svc.build --print-dir)" /build/model
# Runtime wheels only: semcache and its dependencies, no dev tools, no torch.
RUN .venv/bin/python -m pip wheel --no-cache-dir --wheel-dir /build/wheels .

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin semcache
COPY --from=build /build/wheels /tmp/wheels
RUN pip install --no-cache-dir --no-index --find-links /tmp/wheels semcache \
    && rm -rf /tmp/wheels
COPY --from=build /build/model /opt/semcache/model
ENV SEMCACHE_EMBEDDER_MODEL_DIR=/opt/semcache/model \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001
EXPOSE 50051 50052 50053 50060
ENTRYPOINT ["python", "-m"]
CMD ["router_svc"]
