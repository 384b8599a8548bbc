"""Policy: one decision point (Rego in-process or a remote OPA), enforcement, redaction."""
