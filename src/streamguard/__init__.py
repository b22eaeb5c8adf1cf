"""StreamGuard: train code-vulnerability detectors on a laptop or a KubeRay cluster."""

__version__ = "0.1.0"
