"""RayJob bodies from a Config; submit and watch through the kubernetes client."""
