# One image for the API and the CPU device agent.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
WORKDIR /app
# The CPU build of torch first, pinned, so no dependency range can pull a multi-GB CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY supernet supernet
COPY profilers profilers
COPY predictors predictors
COPY search_service search_service
COPY migrations migrations
RUN pip install ".[server]"
EXPOSE 8000
CMD ["sh", "-c", "gpnas db upgrade && exec gpnas serve --host 0.0.0.0 --port 8000"]
