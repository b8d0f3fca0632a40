# One image for web and workers; installs exactly what the Makefile installs.
# GPU hosts: build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 (same torch version).
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TRL_EXPERIMENTAL_SILENCE=1 TOKENIZERS_PARALLELISM=false \
    ACCRETE_VAR=/data ACCRETE_ARTIFACTS=/data/artifacts
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml ./
COPY manage.py Makefile ./
COPY platform ./platform
COPY skills ./skills
COPY workers ./workers
COPY frontend ./frontend
RUN pip install --upgrade pip \
 && pip install torch==2.13.0 --index-url ${TORCH_INDEX} \
 && pip install -e '.[dev]'
RUN DJANGO_DEBUG=1 ACCRETE_VAR=/tmp/build-var python manage.py collectstatic --no-input -v 0
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "8", "--worker-class", "gthread", "--timeout", "120"]
