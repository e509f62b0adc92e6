"""`cronsup web`: a read-only view of the run log in a browser (SPEC section 7)."""
