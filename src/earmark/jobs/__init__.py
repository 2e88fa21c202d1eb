"""The jobs: each module is the orchestration of one command (train, evaluate, distill, audit, prepare).

Jobs sit on top: they call data/, training/, inference/ and evaluation/, and nothing below imports them.
"""
