"""Run directories, manifests and the resumable stage loop."""
