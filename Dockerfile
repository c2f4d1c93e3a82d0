# The trackfence command in a container (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /srv/trackfence
COPY . .
RUN pip install --no-cache-dir .
ENTRYPOINT ["trackfence"]
