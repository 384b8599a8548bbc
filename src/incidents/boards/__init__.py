"""Status boards: a projection per incident, shown through persona views."""
