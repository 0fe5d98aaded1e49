"""A small FastAPI notes app on a module-global `databases.Database`."""
