"""proctor-pipeline's Open edX proctoring backend: edx-proctoring's REST backend pointed at our server."""
