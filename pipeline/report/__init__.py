"""Reporting stage: turns run outputs (results/*.json, runs/*/seed*/gammas.npz) into the paper's
Tables 1 and 7, a statistical check of the claims made about them, and Figure 5.

Nothing here trains or evaluates; every number comes from the run outputs or from `paper.py`.
"""
