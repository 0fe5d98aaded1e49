"""A small FastAPI memos app on a module-global `databases.Database`."""
