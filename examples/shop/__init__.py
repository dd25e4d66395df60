"""A small shop service: a TCP front end on plain asyncio inside a supervised
GenServer, a slow database, importers, a poller on `send_after` and a
DynamicSupervisor for jobs. ``python -m examples.shop``."""
