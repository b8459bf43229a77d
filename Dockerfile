# phasegate operator image: runtime dependencies only, non-root, read-only root filesystem.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m venv /opt/phasegate \
 && /opt/phasegate/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/phasegate/bin/pip install --no-cache-dir . \
 && /opt/phasegate/bin/pip uninstall -y pip setuptools

FROM python:3.11-slim
COPY --from=build /opt/phasegate /opt/phasegate
ENV PATH=/opt/phasegate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/opt/phasegate/bin/phasegate"]
CMD ["run", "--all-namespaces"]
