"""`logic-service compile`: each pipeline compiled ahead of time, in its pickles' own scikit-learn.

- `command.py`: the command: plan per pipeline, run, publish, one line per failure.
- `envs.py`: build environments: an interpreter with exactly the release that pickled an
  artifact (this one, a cached virtual environment made once from pinned wheels, or yours).
- `worker.py`: the compile step inside that interpreter (load, convert, parity, self-test,
  write); it imports only what a build environment has.
"""
