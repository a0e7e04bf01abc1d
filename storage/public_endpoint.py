"""Where presigned URLs send clients, when that is not where the services reach the object store."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublicEndpoint:
    """The host:port that presigned URLs name, where clients reach S3 at another address than the services do
    (a Docker network's `s3:8333` is the host's `files.example.org:8333`). Only URLs are signed for it: SigV4
    signs the host, so a URL must name the address its client connects to."""

    endpoint: str
    secure: bool

    def __post_init__(self) -> None:
        if "://" in self.endpoint or "/" in self.endpoint or not self.endpoint:
            raise ValueError(
                f"a public S3 endpoint is host:port, got {self.endpoint!r}: drop the scheme and any path "
                "(https is its secure flag)"
            )
