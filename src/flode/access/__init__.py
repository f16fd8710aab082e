"""Who may do what: SMART scopes (and, with the access-control rules, Swedish law), decided in
one place for every interaction."""
