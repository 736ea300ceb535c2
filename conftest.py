"""What is specific to this repo's own tests. The options (--backend, --workers, --app), the backend
parametrization, need() and the server / Toxiproxy / Docker fixtures come from the resonate_harness
pytest plugin (harness/pytest_plugin.py), which the installed project registers as an entry point."""

from __future__ import annotations

import os
from importlib.metadata import entry_points

# An install that predates the entry point (pull without `make setup`), or plugin autoloading turned
# off: load the plugin from here instead; never both, or its options would be added twice.
if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD") or not any(
    ep.value == "harness.pytest_plugin" for ep in entry_points(group="pytest11")
):
    pytest_plugins = ["harness.pytest_plugin"]
