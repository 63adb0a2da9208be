# syntax=docker/dockerfile:1.7
# capfilt images: `--target cpu` (dashboard, producer, writer, CPU workers) and `--target gpu`
# (caption/filter workers with onnxruntime-node's CUDA execution provider).

ARG NODE_VERSION=20
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

# ---- deps: every dependency, for the build. The CUDA EP is not needed to compile.
FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund

# ---- build: TypeScript → dist/
FROM deps AS build
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- prod-deps: runtime dependencies only, CPU onnxruntime (bundled in the npm package).
FROM node:${NODE_VERSION}-bookworm-slim AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev --no-audit --no-fund

# ---- gpu-deps: the same tree plus the CUDA 12 execution provider libraries, which
# onnxruntime-node's install script downloads from NuGet (the build has internet).
# package.json's allowScripts keeps npm from running that script, so it is run explicitly,
# with ONNXRUNTIME_NODE_INSTALL=cuda12 forcing the CUDA manifest (script/install-utils.js).
FROM prod-deps AS gpu-deps
RUN cd node_modules/onnxruntime-node \
    && ONNXRUNTIME_NODE_INSTALL=cuda12 node script/install.js \
    && ls bin/napi-v*/linux/x64/libonnxruntime_providers_cuda.so

# ---- cpu: the default image.
FROM node:${NODE_VERSION}-bookworm-slim AS cpu
ENV NODE_ENV=production
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY assets ./assets
USER node
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["--help"]

# ---- gpu: CUDA 12 + cuDNN 9 runtime, the Node binary from the official image.
FROM node:${NODE_VERSION}-bookworm-slim AS node-bin
FROM ${CUDA_IMAGE} AS gpu
ENV NODE_ENV=production
COPY --from=node-bin /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=gpu-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY assets ./assets
RUN useradd --create-home --uid 1001 capfilt
USER capfilt
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["worker", "--help"]
