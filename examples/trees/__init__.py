"""The trees of "How to build a self-healing system using supervision tree in Elixir".

``python -m examples.trees`` replays the post: the simple tree under each
strategy, self-termination after too many restarts, and the complex tree whose
sub-supervisor escalates. Each step prints what the post printed.
"""
