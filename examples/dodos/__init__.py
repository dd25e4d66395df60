"""The world of "The Extinction of the Dodos (OTP style)": dodos and cockroaches.

``world`` holds the API of the post (add_dodos, kill_dodos, dodos, ...);
``python -m examples.dodos`` replays the post's session with suptrace's reports.
"""
