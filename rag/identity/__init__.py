"""Who may do what: accounts and sessions, the sign-in throttle, OIDC accounts, collections and access."""
