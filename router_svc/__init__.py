"""router_svc: the router."""
