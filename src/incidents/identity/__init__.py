"""Who is calling: API tokens, OIDC bearer JWTs, and the directory of users and groups."""
