"""The safety task force's console: the breach-log API (FastAPI) over the shared store."""
