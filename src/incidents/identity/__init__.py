"""Who is calling: API tokens now; users, groups, roles and OIDC later."""
