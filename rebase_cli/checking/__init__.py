"""`rebase check`: probe the policy and reward servers before a long run (see service.py)."""
