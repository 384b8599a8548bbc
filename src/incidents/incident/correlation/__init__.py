"""Alert correlation: fingerprints, grouping rules, and placing alerts on incidents."""
