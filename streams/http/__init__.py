"""The HTTP API: answers and errors (`responses`), limits (`limits`), the routes (`api`), their OpenAPI description (`openapi`) and the live dashboard (`dashboard`, `static/`)."""
