"""The CloudEvents v1.0 envelope: parsing, validation, attribute aliases and the type registry."""
