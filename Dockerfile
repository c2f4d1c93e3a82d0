# The trackfence command in a container (used by docker-compose.yml).
FROM python:3.11-slim
# the trial report's PDF: Pango, HarfBuzz's subsetter and a font (scripts/provision-report-libs.sh)
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/trackfence
COPY . .
RUN pip install --no-cache-dir .
ENTRYPOINT ["trackfence"]
