"""The timeline: append (dedupe, hash chain), query (filters, keyset cursor), export."""
