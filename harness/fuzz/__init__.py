"""`harness fuzz`: a malformed-request corpus against the app's handler, through the gateway.

`corpus` builds the cases from the app's [submit] and [status] templates and a seed; `run` sends
them through a running cluster (runner.session), polls what was accepted, and `analyze` turns the
run directory into the per-case table and the `fuzz` verdict.
"""
