"""Renderers from a run directory to human-readable reports. They read only the run directory."""

from reports.markdown import render

__all__ = ["render"]
