# Builds Kestrel images on hosts that are not Debian: the same `make`
# targets as on a Debian machine, inside Debian bookworm.
#   docker build -t kestrel-build . && docker run --rm -v $PWD/out:/src/out kestrel-build
FROM golang:1.26-bookworm
WORKDIR /src
COPY scripts/deps.sh scripts/deps.sh
RUN bash scripts/deps.sh
COPY . .
CMD ["make", "image"]
