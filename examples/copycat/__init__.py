"""CopyCat, from "Debugging a stopped Elixir Supervisor": the incident, runnable.

``python -m examples.copycat`` runs the service as it was in production (the
import supervisor is ``transient``): a slow update locks Murmur's collection,
importer queries time out, the import supervisor reaches its restart intensity
and vanishes, and nothing restarts it. ``--fixed`` runs it with a permanent
import supervisor, which keeps importing once the database recovers.
"""
