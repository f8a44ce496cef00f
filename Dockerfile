FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY runwatch ./runwatch
COPY workers ./workers
COPY bridge ./bridge
COPY api ./api
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["runwatch"]
