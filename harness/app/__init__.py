"""The app under test: its config (spec) and a drafter for that config (init)."""
