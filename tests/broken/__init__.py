"""Deliberately broken variants of the system under test, to prove the checks can fail.

They are selected with HARNESS_LAMBDA_MODULE / HARNESS_WORKFLOW_MODULE and never shipped in the
user-facing packages.
"""
