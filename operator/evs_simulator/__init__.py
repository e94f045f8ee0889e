"""A faithful local EVS for tests and the sandbox; the operator never imports it."""
