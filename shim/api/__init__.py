"""The HTTP layer: the FastAPI app and its routes, the service's wiring (`deps.Services`),
request ids, the API key guard, logs, and help-desk events, which use the whole wiring.

Imports every other room; none imports it."""
