"""Open edX's REST proctoring backend (edx-proctoring's docs/backends.rst), served beside the `/v1` API."""
