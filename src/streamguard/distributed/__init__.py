"""The only package that imports ray (Ray Train, Tune, Ray Data, Ray metrics)."""
