"""The HTTP API's limits, in one place: the handlers enforce them and the OpenAPI description states them."""

MAX_WAIT = 60  # seconds: the longest ?wait= a request may ask for
MAX_BODY = 64 * 1024  # bytes of a request body
