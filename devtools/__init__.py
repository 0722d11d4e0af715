"""Development tools shared by tests and benchmarks: model and artifact builders, real-server
starters on free ports. Not part of any image; imported from the repository root."""
