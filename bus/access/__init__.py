"""Who may do what on the bus: the city's topology (producers, subscriptions) and the
least-privilege Redis ACLs rendered from it."""
