"""Command-line entry points of tfbdl: one module per paper, plus data and run-all commands.

Modules here are thin: they parse options, pick a scale preset, call ``tfbdl`` and write a run
directory. TensorFlow is imported only inside the commands that need it.
"""
